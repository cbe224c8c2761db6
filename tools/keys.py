#!/usr/bin/env python3
"""Give a client its own OSCORE key for the alarm (RFC 8613), or take it away.

  python tools/keys.py add laptop --device 192.168.1.57     # `make keys NAME=laptop DEVICE=...`
  python tools/keys.py revoke laptop                         # `make keys NAME=laptop REVOKE=1`
  python tools/keys.py list

`add` makes a fresh random master secret and salt, and a Sender ID for each side that no other
client of this board has. It writes the board's side into the local board config (config.json
here, or --config: what `make deploy CONFIG=config.json` uploads and `make sim CONFIG=config.json`
runs), and the client's side into keys/NAME/ (or --keys DIR): an aiocoap security context
directory (context/) and an aiocoap credentials file (credentials.json) for
`aiocoap-client --credentials` and `tools/alarmctl.py --credentials`. Secrets are never printed.

The algorithms are aiocoap's defaults, which the firmware uses too: AES-CCM-16-64-128 (COSE
algorithm 10) and HKDF-SHA256. A context directory is used by one process at a time (aiocoap
locks it), and must never be copied: each client gets its own with `add`.
"""
import argparse
import json
import os
import re
import secrets
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "config.json")
KEYS = os.path.join(ROOT, "keys")

SECRET_BYTES = 32     # the firmware accepts 16 or more
SALT_BYTES = 8
ID_MAX = 7            # AES-CCM-16-64-128: a 13-byte nonce leaves 13 - 6 bytes for an ID
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
COAP_PORT = 5683


class KeysError(Exception):
    """A mistake the user can fix: one line, exit code 1."""


def shown(path):
    """A path as the user would type it: relative to here when inside."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


# -- the board's side: the local config ------------------------------------------------------

def read_config(path):
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise KeysError("cannot read %s: %s" % (shown(path), e))
    if not isinstance(cfg, dict):
        raise KeysError("%s must hold a JSON object" % shown(path))
    contexts = cfg.get("oscore", [])
    if not isinstance(contexts, list) or not all(isinstance(c, dict) for c in contexts):
        raise KeysError('%s: "oscore" must be a list of objects, one per client' % shown(path))
    return cfg


def write_config(path, cfg):
    """Atomically, as the board writes its files; a new file is readable by its owner only
    (it holds the board's side of every key)."""
    mode = (os.stat(path).st_mode & 0o777) if os.path.exists(path) else 0o600
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def firmware_check(cfg):
    """The firmware's own validator on the new config (as `make deploy` runs it). Returns the
    problems, or None when this firmware has no OSCORE yet."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from firmware import config
    if "oscore" not in config.SCHEMA:
        return None
    problems = []
    config.validate(cfg, lambda m: problems.append(m) if "warning" not in m else None)
    return problems


def fresh_ids(contexts):
    """Two Sender IDs (the client's, the board's) that no context of this board uses yet, on
    either side: the shortest first (an ID travels in every request)."""
    used = set()
    for c in contexts:
        for key in ("sender_id", "recipient_id"):
            if isinstance(c.get(key), str):
                used.add(c[key].lower())
    out = []
    for n in range(1, 256 ** ID_MAX):
        h = n.to_bytes((n.bit_length() + 7) // 8, "big").hex()
        if h not in used:
            out.append(h)
            if len(out) == 2:
                return out
    raise KeysError("no free Sender IDs left")  # not reached: 2**56 of them


# -- the client's side: an aiocoap context directory and credentials file -------------------

def target(device):
    """'192.168.1.57', '127.0.0.1:5700', 'alarm.local' or a coap:// URI -> (host, port or None).
    The default port is left out: aiocoap matches credentials on the URI as written, and
    tools/alarmctl.py writes it so."""
    text = device.strip()
    m = re.fullmatch(r"(?:coap://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d+))?/?", text)
    if not m or text.startswith("/"):
        raise KeysError("DEVICE=%s is not a network address: give the board's address, as in "
                        "DEVICE=192.168.1.57 (or DEVICE=127.0.0.1 for make sim; a port as in "
                        "127.0.0.1:5700), not its serial port" % device)
    port = int(m.group(2)) if m.group(2) else None
    if port is not None and not 1 <= port <= 65535:
        raise KeysError("DEVICE=%s: the port must be from 1 to 65535" % device)
    return m.group(1).lower(), (None if port == COAP_PORT else port)


def origin(device):
    host, port = target(device)
    return "coap://%s%s" % (host, ":%d" % port if port else "")


def write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def write_client(folder, entry, device):
    """keys/NAME/context/ (aiocoap's FilesystemSecurityContext: the static parameters in
    settings.json, the secret ones in secret.json, its sequence numbers it keeps itself) and
    keys/NAME/credentials.json pointing at it for the board's address."""
    context = os.path.join(folder, "context")
    os.makedirs(context, mode=0o700)
    # The other side of the board's entry: what the board sends is what the client receives.
    write_private(os.path.join(context, "settings.json"), {
        "sender-id_hex": entry["recipient_id"],
        "recipient-id_hex": entry["sender_id"],
    })
    write_private(os.path.join(context, "secret.json"), {
        "secret_hex": entry["secret"],
        "salt_hex": entry["salt"],
    })
    credentials = os.path.join(folder, "credentials.json")
    # aiocoap takes basedir relative to the working directory of the program that loads it:
    # absolute, so that the file works from anywhere.
    write_private(credentials, {
        origin(device) + "/*": {"oscore": {"basedir": os.path.abspath(context) + os.sep}},
    })
    return credentials


# -- the commands ----------------------------------------------------------------------------

def check_name(name):
    if not name:
        raise KeysError("a client needs a name: make keys NAME=laptop DEVICE=192.168.1.57")
    if not NAME_RE.match(name):
        raise KeysError("NAME=%s: a name is 1 to 32 letters, digits, '.', '_' or '-', starting "
                        "with a letter or digit" % name)


def add(name, device, config_path=CONFIG, keys_dir=KEYS):
    """Provision a client. Returns {'credentials', 'context', 'entry', 'config'}: the paths and
    the board's entry (which holds the secret: for tests, never for printing)."""
    check_name(name)
    if not device:
        raise KeysError("the credentials need the board's address: make keys NAME=%s "
                        "DEVICE=192.168.1.57 (DEVICE=127.0.0.1 for make sim)" % name)
    target(device)
    if not os.path.isdir(os.path.dirname(os.path.abspath(config_path))):
        raise KeysError("there is no folder %s for the config %s"
                        % (shown(os.path.dirname(os.path.abspath(config_path))), shown(config_path)))
    cfg = read_config(config_path)
    contexts = cfg.get("oscore", [])
    folder = os.path.join(keys_dir, name)
    if any(c.get("name") == name for c in contexts) or os.path.exists(folder):
        where = [w for w, there in ((shown(config_path), any(c.get("name") == name for c in contexts)),
                                    (shown(folder) + "/", os.path.exists(folder))) if there]
        raise KeysError("a client named %s exists already (in %s): give this one another name, or "
                        "revoke that one first: make keys NAME=%s REVOKE=1"
                        % (name, " and ".join(where), name))
    client_id, board_id = fresh_ids(contexts)
    entry = {
        "name": name,
        "secret": secrets.token_bytes(SECRET_BYTES).hex(),
        "salt": secrets.token_bytes(SALT_BYTES).hex(),
        "sender_id": board_id,
        "recipient_id": client_id,
    }
    new = dict(cfg, oscore=contexts + [entry])
    problems = firmware_check(new)
    if problems:
        raise KeysError("the firmware would refuse the new config; nothing was written:\n  "
                        + "\n  ".join(problems))
    os.makedirs(keys_dir, mode=0o700, exist_ok=True)
    os.makedirs(folder, mode=0o700)
    try:
        credentials = write_client(folder, entry, device)
        write_config(config_path, new)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return {"credentials": credentials, "context": os.path.join(folder, "context"),
            "entry": entry, "config": config_path, "unsupported": problems is None}


def revoke(name, config_path=CONFIG, keys_dir=KEYS):
    """Take a client's key away: from the local config and from keys/NAME/. Returns what was
    removed (at least one of the two, else an error)."""
    check_name(name)
    cfg = read_config(config_path)
    contexts = cfg.get("oscore", [])
    keep = [c for c in contexts if c.get("name") != name]
    folder = os.path.join(keys_dir, name)
    removed = []
    if len(keep) != len(contexts):
        if keep:
            cfg["oscore"] = keep
        else:
            del cfg["oscore"]
        write_config(config_path, cfg)
        removed.append(shown(config_path))
    if os.path.isdir(folder):
        shutil.rmtree(folder)
        removed.append(shown(folder) + "/")
    if not removed:
        names = [c.get("name") for c in contexts]
        raise KeysError("no client named %s in %s or %s/ (clients there: %s)"
                        % (name, shown(config_path), shown(keys_dir), ", ".join(map(str, names)) or "none"))
    return removed


def listing(config_path=CONFIG, keys_dir=KEYS):
    cfg = read_config(config_path)
    lines = []
    for c in cfg.get("oscore", []):
        folder = os.path.join(keys_dir, str(c.get("name")))
        lines.append("%-16s board Sender ID %-4s client Sender ID %-4s %s" % (
            c.get("name"), c.get("sender_id") or "''", c.get("recipient_id") or "''",
            shown(folder) + "/" if os.path.isdir(folder) else "(no credentials here)"))
    if not lines:
        lines.append("no clients in %s: the alarm is open to everyone on its network "
                     "(make keys NAME=laptop DEVICE=192.168.1.57 adds one)" % shown(config_path))
    else:
        lines.append("unprotected requests: %s" % cfg.get("unprotected", "read (the default)"))
    return lines


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=CONFIG,
                        help="the local board config to change (default: config.json here)")
    common.add_argument("--keys", default=KEYS, metavar="DIR",
                        help="where the clients' folders are (default: keys/ here)")
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", parents=[common], help="give a new client its own key")
    a.add_argument("name", help="a label for the client (laptop, phone-anna)")
    a.add_argument("--device",
                   help="the board's address as the client will use it: 192.168.1.57, "
                        "127.0.0.1:5700 (the credentials are for coap://DEVICE/*)")
    r = sub.add_parser("revoke", parents=[common], help="take a client's key away")
    r.add_argument("name")
    sub.add_parser("list", parents=[common], help="the clients in the local config")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.command == "add":
            got = add(args.name, args.device, args.config, args.keys)
            cred = shown(got["credentials"])
            uri = origin(args.device)
            print("keys: added client %s to %s (its Sender ID %s, the board's %s)"
                  % (args.name, shown(args.config), got["entry"]["recipient_id"], got["entry"]["sender_id"]))
            print("keys: its key is in %s/ (an aiocoap context, used by one program at a time) and "
                  "%s (for %s/*)" % (shown(got["context"]), cred, uri))
            if got["unsupported"]:
                print("keys: note: the firmware in this checkout has no OSCORE yet: it ignores "
                      "the \"oscore\" key")
            print("next: give the board the new config: make deploy DEVICE=/dev/ttyUSB0 CONFIG=%s "
                  "(with your SSID=... PASSWORD=...), or run it: make sim CONFIG=%s"
                  % (shown(args.config), shown(args.config)))
            print("then: .venv/bin/python tools/alarmctl.py --credentials %s put %s/alarm ON"
                  % (cred, uri))
        elif args.command == "revoke":
            removed = revoke(args.name, args.config, args.keys)
            print("keys: revoked %s: removed from %s" % (args.name, " and ".join(removed)))
            if shown(args.config) in removed:
                print("next: give the board the new config (make deploy ... CONFIG=%s, or make sim "
                      "CONFIG=%s): until then the board still accepts that key"
                      % (shown(args.config), shown(args.config)))
        else:
            print("\n".join(listing(args.config, args.keys)))
        return 0
    except KeysError as e:
        print("keys: error: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("keys: error: %s: %s" % (e.filename or "", e.strerror or e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
