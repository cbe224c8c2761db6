# tools/keys.py (`make keys`): a client's own OSCORE key, on the board's side (the local
# config.json) and on the client's (an aiocoap context directory and credentials file); and
# tools/alarmctl.py with those credentials against aiocoap's own OSCORE server.
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from harness import (ALARMCTL, ROOT, OscoreAlarmServer, board_side_context, free_udp_port,
                     needs_oscore_firmware, provision_client, provision_clients, run_alarmctl, tool)

KEYS = os.path.join(ROOT, "tools", "keys.py")


def run_keys(*args):
    r = subprocess.run([sys.executable, KEYS] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def load_context(folder):
    """aiocoap's own loader on a context directory (it locks it: released on return)."""
    from aiocoap.oscore import FilesystemSecurityContext
    ctx = FilesystemSecurityContext(str(folder))
    try:
        return ctx.sender_id, ctx.recipient_id, ctx.alg_aead.value, ctx.hashfun
    finally:
        ctx._destroy()


def test_add_writes_both_sides_of_one_fresh_key(tmp_path):
    cfg_path, keys_dir = tmp_path / "config.json", tmp_path / "keys"
    cfg_path.write_text(json.dumps({"persist": True, "output_pin": 4}))
    got = provision_client(cfg_path, "laptop", "192.168.1.57", keys_dir)
    cfg = json.loads(cfg_path.read_text())
    assert cfg["persist"] is True and cfg["output_pin"] == 4        # the rest is kept
    entry, = cfg["oscore"]
    assert entry == got["entry"] and entry["name"] == "laptop"
    assert len(bytes.fromhex(entry["secret"])) >= 16 and entry["salt"]
    assert entry["sender_id"] != entry["recipient_id"]
    # The client's side, read by aiocoap itself: the mirror image, aiocoap's default algorithms.
    sender, recipient, alg, _ = load_context(got["context"])
    assert sender.hex() == entry["recipient_id"] and recipient.hex() == entry["sender_id"]
    assert alg == 10   # AES-CCM-16-64-128
    with open(os.path.join(got["context"], "secret.json")) as f:
        secret = json.load(f)
    assert secret == {"secret_hex": entry["secret"], "salt_hex": entry["salt"]}
    # Readable by their owner only.
    for path in (got["context"], os.path.join(got["context"], "secret.json"), got["credentials"]):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
    with open(got["credentials"]) as f:
        creds = json.load(f)
    assert creds == {"coap://192.168.1.57/*": {"oscore": {"basedir": got["context"] + os.sep}}}
    assert os.path.isabs(got["context"])


def test_a_new_config_file_is_private(tmp_path):
    got = provision_client(tmp_path / "board.json", "laptop", "127.0.0.1", tmp_path / "keys")
    assert stat.S_IMODE(os.stat(got["config"]).st_mode) == 0o600


def test_every_client_gets_its_own_secret_and_ids_no_other_context_uses(tmp_path):
    cfg_path = tmp_path / "config.json"
    # A context written by hand that already uses the first IDs.
    cfg_path.write_text(json.dumps({"oscore": [{"name": "old", "secret": "00" * 16,
                                                "sender_id": "01", "recipient_id": "03"}]}))
    for name in ("laptop", "phone", "hub"):
        provision_client(cfg_path, name, "192.168.1.57", tmp_path / "keys")
    contexts = json.loads(cfg_path.read_text())["oscore"]
    assert [c["name"] for c in contexts] == ["old", "laptop", "phone", "hub"]
    ids = [c[k] for c in contexts for k in ("sender_id", "recipient_id")]
    assert len(set(ids)) == len(ids), ids
    secrets = [c["secret"] for c in contexts]
    assert len(set(secrets)) == len(secrets)
    assert all(len(i) == 2 for i in ids)   # one byte each: the shortest free ones


@pytest.mark.parametrize("leftover", ["config", "folder"])
def test_a_duplicate_name_is_refused_and_changes_nothing(tmp_path, leftover):
    cfg_path, keys_dir = tmp_path / "config.json", tmp_path / "keys"
    provision_client(cfg_path, "laptop", "192.168.1.57", keys_dir)
    if leftover == "folder":   # only the client's folder is left: still taken
        cfg_path.write_text("{}")
    before = cfg_path.read_text()
    rc, out, err = run_keys("add", "laptop", "--device", "192.168.1.57", "--config", cfg_path,
                            "--keys", keys_dir)
    assert rc == 1 and out == "", (out, err)
    assert err.startswith("keys: error: a client named laptop exists already (in ") and \
        "make keys NAME=laptop REVOKE=1" in err, err
    assert cfg_path.read_text() == before


def test_revoke_takes_the_key_away_on_both_sides(tmp_path):
    cfg_path, keys_dir = tmp_path / "config.json", tmp_path / "keys"
    provision_client(cfg_path, "laptop", "192.168.1.57", keys_dir)
    phone = provision_client(cfg_path, "phone", "192.168.1.57", keys_dir)
    rc, out, err = run_keys("revoke", "laptop", "--config", cfg_path, "--keys", keys_dir)
    assert rc == 0, err
    assert out.startswith("keys: revoked laptop: removed from ")
    assert [c["name"] for c in json.loads(cfg_path.read_text())["oscore"]] == ["phone"]
    assert not (keys_dir / "laptop").exists() and os.path.isdir(phone["context"])
    rc, out, err = run_keys("revoke", "laptop", "--config", cfg_path, "--keys", keys_dir)
    assert rc == 1 and "keys: error: no client named laptop in " in err and "clients there: phone" in err
    # The last one gone: no "oscore" key left, the board is open again (and says so at boot).
    assert run_keys("revoke", "phone", "--config", cfg_path, "--keys", keys_dir)[0] == 0
    assert "oscore" not in json.loads(cfg_path.read_text())
    # The name is free again, with a new secret.
    again = provision_client(cfg_path, "laptop", "192.168.1.57", keys_dir)
    assert again["entry"]["secret"] != phone["entry"]["secret"]


def test_the_tool_never_prints_a_secret(tmp_path):
    cfg_path, keys_dir = tmp_path / "config.json", tmp_path / "keys"
    rc, out, err = run_keys("add", "laptop", "--device", "192.168.1.57", "--config", cfg_path,
                            "--keys", keys_dir)
    assert rc == 0, err
    entry, = json.loads(cfg_path.read_text())["oscore"]
    rc2, listed, _ = run_keys("list", "--config", cfg_path, "--keys", keys_dir)
    for text in (out, err, listed):
        assert entry["secret"] not in text and entry["salt"] not in text
    assert "tools/alarmctl.py --credentials " in out and "make deploy DEVICE=/dev/ttyUSB0 CONFIG=" in out
    assert listed.startswith("laptop ")


@pytest.mark.parametrize("args, message", [
    (["add", "laptop"], "the credentials need the board's address: make keys NAME=laptop DEVICE="),
    (["add", "laptop", "--device", "/dev/ttyUSB0"], "DEVICE=/dev/ttyUSB0 is not a network address"),
    (["add", "lap top", "--device", "1.2.3.4"], "a name is 1 to 32 letters, digits"),
    (["add", "", "--device", "1.2.3.4"], "a client needs a name"),
    (["add", "laptop", "--device", "1.2.3.4", "--config", "/nonexistent/c.json"], "there is no folder /nonexistent"),
])
def test_mistakes_get_one_clear_line(tmp_path, args, message):
    rc, out, err = run_keys(args[0], "--config", tmp_path / "c.json", "--keys", tmp_path / "k", *args[1:])
    assert rc == 1 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "k").exists()


def make_env():
    return {k: v for k, v in os.environ.items()
            if k not in ("PORT", "DEVICE", "NAME", "CONFIG", "REVOKE", "KEYS_DIR", "MAKEFLAGS",
                         "MAKELEVEL", "MFLAGS")}


def run_make(*args):
    return subprocess.run([tool("make"), "-s", "-C", ROOT, "keys"] + list(args), capture_output=True,
                          text=True, timeout=60, env=make_env())


def test_make_keys_adds_and_revokes(tmp_path):
    cfg_path, keys_dir = tmp_path / "config.json", tmp_path / "keys"
    where = ["CONFIG=%s" % cfg_path, "KEYS_DIR=%s" % keys_dir]
    r = run_make("NAME=laptop", "DEVICE=192.168.1.57", *where)
    assert r.returncode == 0, r.stderr
    assert os.path.exists(keys_dir / "laptop" / "credentials.json")
    r = run_make("NAME=laptop", "DEVICE=192.168.1.57", *where)
    assert r.returncode != 0 and "a client named laptop exists already" in r.stderr
    # Without DEVICE (make's own default is deploy's serial port): said, not taken.
    r = run_make("NAME=phone", *where)
    assert r.returncode != 0 and "the credentials need the board's address" in r.stderr, r.stderr
    r = run_make("NAME=laptop", "REVOKE=1", *where)
    assert r.returncode == 0 and "keys: revoked laptop" in r.stdout, r.stderr
    assert not (keys_dir / "laptop").exists()


# -- the credentials at work: alarmctl against aiocoap's OSCORE server ------------------------

@pytest.fixture
def oscore_board(tmp_path):
    """Two clients provisioned with the keys tool (laptop, phone) and an aiocoap OSCORE server
    holding the board's side of both: (server, {name: credentials path})."""
    port = free_udp_port()
    cfg_path = tmp_path / "config.json"
    creds, dirs = {}, []
    for name in ("laptop", "phone"):
        got = provision_client(cfg_path, name, "127.0.0.1:%d" % port, tmp_path / "keys")
        creds[name] = got["credentials"]
        dirs.append(board_side_context(got["entry"], tmp_path / ("board-" + name)))
    server = OscoreAlarmServer(dirs, port)
    yield server, creds
    server.stop()


def test_alarmctl_gets_and_puts_with_the_generated_key(oscore_board):
    server, creds = oscore_board
    uri = "coap://127.0.0.1:%d/alarm" % server.port
    assert run_alarmctl("--credentials", creds["laptop"], "get", uri) == (0, "OFF\n", "")
    assert run_alarmctl("--credentials", creds["laptop"], "put", uri, "ON") == (0, "ON\n", "")
    assert server.state is True
    assert server.requests == [("GET", True), ("PUT", True)]   # both came protected


def test_without_the_key_a_put_gets_a_clear_401(oscore_board):
    server, _ = oscore_board
    rc, out, err = run_alarmctl("put", "127.0.0.1:%d" % server.port, "ON")
    assert rc == 1 and out == ""
    assert "4.01 Unauthorized: OSCORE required; the board wants OSCORE for this: use --credentials" in err
    assert server.state is False and server.requests == [("PUT", False)]


@pytest.mark.parametrize("ids_taken, answer", [
    (0, "4.00 Bad Request"),        # a known Sender ID with another secret: decryption fails
    (4, "4.01 Unauthorized"),       # an ID the board has no context for
])
def test_a_key_the_board_does_not_have_is_refused(oscore_board, tmp_path, ids_taken, answer):
    server, _ = oscore_board
    # A client provisioned for another board (another config), aimed at this one.
    other_cfg = tmp_path / "other.json"
    other_cfg.write_text(json.dumps({"oscore": [
        {"name": "x%d" % i, "secret": "00" * 16, "sender_id": "%02x" % (2 * i + 1),
         "recipient_id": "%02x" % (2 * i + 2)} for i in range(ids_taken // 2)]}))
    other = provision_client(other_cfg, "laptop", "127.0.0.1:%d" % server.port, tmp_path / "other-keys")
    rc, out, err = run_alarmctl("--credentials", other["credentials"], "put",
                                "127.0.0.1:%d" % server.port, "ON")
    assert rc == 1 and "the board answered without protection: " + answer in err, err
    assert "It does not have this key" in err
    assert server.state is False


def test_credentials_without_a_key_for_the_uri_send_nothing(oscore_board):
    server, creds = oscore_board
    rc, out, err = run_alarmctl("--credentials", creds["laptop"], "put", "coap://localhost:%d/alarm"
                                % server.port, "ON")
    assert rc == 4 and "has no OSCORE key for coap://localhost:" in err and "nothing was sent" in err
    assert server.requests == []


def test_a_missing_credentials_file_is_one_line(tmp_path):
    rc, out, err = run_alarmctl("--credentials", tmp_path / "nope.json", "get", "127.0.0.1")
    assert rc == 4 and err.startswith("alarmctl: cannot read the credentials ") and err.count("\n") == 1


def test_alarmctl_observes_every_change_protected_while_another_client_puts(oscore_board):
    server, creds = oscore_board
    uri = "coap://127.0.0.1:%d/alarm" % server.port
    obs = subprocess.Popen([sys.executable, ALARMCTL, "--credentials", creds["laptop"], "observe",
                            uri, "--count", "4", "--timeout", "30"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert obs.stdout.readline() == "OFF\n"     # registered: the first value
        for word in ("ON", "OFF", "ON"):            # the phone, with its own key
            assert run_alarmctl("--credentials", creds["phone"], "put", uri, word)[0] == 0
            assert obs.stdout.readline() == word + "\n"
        assert obs.wait(15) == 0, obs.stderr.read()
    finally:
        obs.kill()
        obs.wait()
    assert all(protected for _, protected in server.requests), server.requests


def test_one_key_is_used_by_one_program_at_a_time(oscore_board):
    server, creds = oscore_board
    uri = "coap://127.0.0.1:%d/alarm" % server.port
    obs = subprocess.Popen([sys.executable, ALARMCTL, "--credentials", creds["laptop"], "observe",
                            uri, "--timeout", "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert obs.stdout.readline() == "OFF\n"
        rc, out, err = run_alarmctl("--credentials", creds["laptop"], "get", uri)
        assert rc == 4 and "is in use by another program (aiocoap locks a context directory" in err
    finally:
        obs.kill()
        obs.wait()
    # Its owner gone, the key works again, its sequence numbers carried on from its file.
    deadline = time.monotonic() + 10
    while True:
        rc, out, err = run_alarmctl("--credentials", creds["laptop"], "get", uri)
        if rc != 4 or time.monotonic() > deadline:
            break
    assert (rc, out) == (0, "OFF\n"), err


def test_aiocoap_client_uses_the_generated_credentials(oscore_board):
    server, creds = oscore_board
    uri = "coap://127.0.0.1:%d/alarm" % server.port
    r = subprocess.run([tool("aiocoap-client"), "--credentials", creds["laptop"], "-m", "PUT",
                        "--payload", "ON", uri], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert server.state is True and server.requests == [("PUT", True)]


# -- the same keys against the firmware itself (skipped until it has OSCORE, issue 9) ---------

def test_keys_for_the_firmware_leave_plain_reading_open(firmware, tmp_path):
    # Any firmware takes the config the keys tool makes; reading without a key stays open
    # ("read", the default; or no OSCORE at all).
    port, config, creds = provision_clients(tmp_path, ("laptop", "phone"))
    assert [c["name"] for c in config["oscore"]] == ["laptop", "phone"]
    fw = firmware(**config)
    assert fw.port == port
    assert run_alarmctl("get", "127.0.0.1:%d" % port) == (0, "OFF\n", "")


@needs_oscore_firmware
def test_firmware_protected_get_put_and_a_refused_plain_put(firmware, tmp_path):
    port, config, creds = provision_clients(tmp_path, ("laptop",))
    fw = firmware(**config)
    uri = "coap://127.0.0.1:%d/alarm" % port
    assert run_alarmctl("--credentials", creds["laptop"], "put", uri, "ON") == (0, "ON\n", "")
    assert run_alarmctl("--credentials", creds["laptop"], "get", uri) == (0, "ON\n", "")
    rc, out, err = run_alarmctl("put", uri, "OFF")
    assert rc == 1 and "4.01 Unauthorized" in err and "use --credentials" in err, err
    assert run_alarmctl("get", uri) == (0, "ON\n", "")    # untouched, and readable ("read")
    assert fw.alive()


@needs_oscore_firmware
def test_firmware_two_clients_one_observes_every_change_the_other_makes(firmware, tmp_path):
    port, config, creds = provision_clients(tmp_path, ("laptop", "phone"))
    firmware(**config)
    uri = "coap://127.0.0.1:%d/alarm" % port
    obs = subprocess.Popen([sys.executable, ALARMCTL, "--credentials", creds["laptop"], "observe",
                            uri, "--count", "4", "--timeout", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert obs.stdout.readline() == "OFF\n"
        for word in ("ON", "OFF", "ON"):
            assert run_alarmctl("--credentials", creds["phone"], "put", uri, word)[0] == 0
            assert obs.stdout.readline() == word + "\n"
        assert obs.wait(15) == 0, obs.stderr.read()
    finally:
        obs.kill()
        obs.wait()


@needs_oscore_firmware
def test_firmware_refuses_a_key_it_does_not_have(firmware, tmp_path):
    port, config, creds = provision_clients(tmp_path / "a", ("laptop",))
    _, _, stranger = provision_clients(tmp_path / "b", ("laptop",), port=port)
    firmware(**config)
    rc, out, err = run_alarmctl("--credentials", stranger["laptop"], "put", "127.0.0.1:%d" % port, "ON")
    assert rc == 1 and "the board answered without protection" in err, err
    assert run_alarmctl("get", "127.0.0.1:%d" % port) == (0, "OFF\n", "")


@needs_oscore_firmware
def test_firmware_after_a_restart_the_same_key_works_again(firmware, tmp_path):
    # The board forgets its replay window at a reboot; aiocoap answers its Echo by itself.
    port, config, creds = provision_clients(tmp_path, ("laptop",))
    fw = firmware(**config)
    uri = "coap://127.0.0.1:%d/alarm" % port
    assert run_alarmctl("--credentials", creds["laptop"], "put", uri, "ON")[0] == 0
    fw.stop()
    firmware(**config)
    assert run_alarmctl("--credentials", creds["laptop"], "put", uri, "OFF") == (0, "OFF\n", "")


@needs_oscore_firmware
def test_firmware_aiocoap_client_with_the_generated_credentials(firmware, tmp_path):
    port, config, creds = provision_clients(tmp_path, ("laptop",))
    firmware(**config)
    r = subprocess.run([tool("aiocoap-client"), "--credentials", creds["laptop"], "-m", "PUT",
                        "--payload", "ON", "coap://127.0.0.1:%d/alarm" % port],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert run_alarmctl("get", "127.0.0.1:%d" % port) == (0, "ON\n", "")
