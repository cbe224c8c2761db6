# `make sim` runs tools/sim.py: the real main.py under micropython with simulated pins.
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from host import coapmsg as coap
from harness import ROOT, Client, free_udp_port, tool, SIM, start_process, start_sim, ctrl_c
from harness import needs_oscore_firmware, provision_clients, run_alarmctl



def wait_line(p, text):
    for line in p.stdout:
        if text in line:
            return line
    raise AssertionError("never printed %r" % text)


@pytest.mark.parametrize("how", [[], ["--heap", "256k"], ["--cpython"]], ids=["vm", "vm-heap", "cpython"])
def test_sim_serves_alarm_and_pins_can_be_driven(how):
    if how != ["--cpython"]:
        tool("micropython")  # where there is none, the sim runs CPython: the case below
    port = free_udp_port()
    p, lines = start_sim("--port", str(port), *how)
    try:
        assert "coap://127.0.0.1:%d/alarm" % port in lines[-1]
        if how == ["--cpython"]:
            assert lines[0] == "sim: --cpython: running the same firmware under CPython\n"
        c = Client(port)
        assert c.request(coap.GET).payload == b"OFF"
        p.stdin.write("press\n")
        p.stdin.flush()
        wait_line(p, "output GPIO2 = 1")
        assert c.request(coap.GET).payload == b"ON"
        c.close()
    finally:
        rest = ctrl_c(p)
    assert p.returncode == 0 and rest.endswith("sim: stopped\n") and "Traceback" not in rest, rest


def test_the_smallest_heap_the_sim_names_serves():
    tool("micropython")  # heap sizes are the VM's
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import sim
    port = free_udp_port()
    p, _ = start_sim("--port", str(port), "--heap", "%dk" % (sim.SMALLEST_HEAP // 1024))
    try:
        c = Client(port)
        assert c.request(coap.GET).payload == b"OFF"
        c.close()
    finally:
        ctrl_c(p)


def test_without_a_vm_the_sim_runs_the_firmware_under_cpython(tmp_path):
    # A Python with no `micropython` beside it nor on PATH: what a Raspberry Pi or an Intel Mac has.
    import platform
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(os.path.realpath(sys.executable), bindir / "python3")
    env = dict(os.environ, PATH=str(tmp_path / "empty"))
    port = free_udp_port()
    p, lines = start_process([str(bindir / "python3"), SIM, "--port", str(port), "--heap", "64k"], env)
    try:
        assert lines[0] == ("sim: no MicroPython VM for %s %s: running the same firmware under CPython "
                            "(--heap needs the VM: ignored)\n" % (sys.platform, platform.machine()))
        c = Client(port)
        assert c.request(coap.GET).payload == b"OFF"
        c.close()
    finally:
        rest = ctrl_c(p)
    assert p.returncode == 0 and rest.endswith("sim: stopped\n"), rest


def test_ctrl_c_stops_cleanly_and_leaves_no_temporary_folder(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p, lines = start_sim("--port", str(free_udp_port()), "--heap", "128k", env=env)
    assert "sim: stop with Ctrl-C\n" in lines
    assert any(n.startswith("coap-alarm-sim-") for n in os.listdir(tmp_path))  # the .mpy build
    rest = ctrl_c(p)
    assert p.returncode == 0, rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert rest.endswith("sim: stopped\n")
    assert os.listdir(tmp_path) == []


def run_sim(*args):
    r = subprocess.run([sys.executable, SIM] + list(args), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r.stderr


def test_sim_rejects_a_bad_port():
    assert "--port must be from 1 to 65535" in run_sim("--port", "70000")


@pytest.mark.parametrize("args, message", [
    (["--bind", "10.9.9.9"], "sim: error: 10.9.9.9 is not an address of this computer: use 127.0.0.1"),
    (["--bind", "::1"], "sim: error: ::1 is an IPv6 address, and the firmware speaks IPv4 only"),
    (["--bind", "no-such-host.invalid"], "is neither an IPv4 address nor a name this computer knows"),
    (["--heap", "16k"], "sim: error: a 16k heap is too small: the firmware serves in 64k or more"),
    (["--heap", "lots"], "sim: error: heap size 'lots' is not a size such as 64k or 1m"),
])
def test_ordinary_mistakes_get_one_clear_line(args, message):
    err = run_sim("--port", str(free_udp_port()), *args)
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("content, kind", [("[1, 2]", "list"), ('"x"', "string")])
def test_a_config_that_is_not_an_object(tmp_path, content, kind):
    path = tmp_path / "config.json"
    path.write_text(content)
    err = run_sim("--port", str(free_udp_port()), "--config", str(path))
    assert err == 'sim: error: %s must hold a JSON object such as {"output_pin": 4}, not a %s\n' % (path, kind)


def test_a_port_in_use_is_refused():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        err = run_sim("--port", str(port))
    finally:
        s.close()
    assert "UDP port %d is already in use on this computer" % port in err
    assert "choose another port: make sim PORT=5700" in err


def test_too_little_heap_for_the_configuration_is_one_line(tmp_path):
    tool("micropython")  # heap sizes are the VM's
    # Bigger tables than the defaults do not fit where the defaults just boot.
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"dedup_entries": 256, "max_observers": 64, "max_payload": 1024}))
    err = run_sim("--port", str(free_udp_port()), "--heap", "64k", "--config", str(path))
    assert err == ("sim: error: the firmware ran out of memory while starting in a 64k heap: the "
                   "default configuration serves in 64k or more, larger limits need more (64k is "
                   "the board-like size)\n")


def test_localhost_is_resolved():
    port = free_udp_port()
    p, lines = start_sim("--port", str(port), "--bind", "localhost")
    try:
        assert lines[0] == "sim: localhost is 127.0.0.1\n"
        c = Client(port)
        assert c.request(coap.GET).payload == b"OFF"
        c.close()
    finally:
        ctrl_c(p)


def test_wildcard_bind_prints_the_addresses_for_a_phone():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import sim
    port = free_udp_port()
    p, lines = start_sim("--port", str(port), "--bind", "0.0.0.0")
    ctrl_c(p)
    phone = [l for l in lines if "from a phone on your network" in l]
    lan = sim.lan_addresses()
    assert phone == ["sim: from a phone on your network:  coap://%s:%d/alarm\n" % (a, port) for a in lan]
    if not lan:
        assert "sim: this computer has no network address besides 127.0.0.1 (not connected?)\n" in lines


def make_env():
    return {k: v for k, v in os.environ.items()
            if k not in ("PORT", "BIND", "HEAP", "CONFIG", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}


def test_make_sim_passes_the_config_and_stops_on_ctrl_c(tmp_path):
    path = tmp_path / "my.json"
    path.write_text(json.dumps({"output_pin": 4, "input_pin": None}))
    port = free_udp_port()
    p, lines = start_process([tool("make"), "-s", "-C", ROOT, "sim", "PORT=%d" % port, "CONFIG=" + str(path)],
                     env=make_env())
    pins = wait_line(p, "[sim] simulated pins")
    rest = ctrl_c(p)
    out = "".join(lines) + pins + rest
    assert pins.startswith("[sim] simulated pins: output GPIO4, input none.")
    assert "sim: stopped" in out and "Traceback" not in out and "Error" not in out, out


def test_make_help_lists_the_targets_and_their_options():
    r = subprocess.run([tool("make"), "-s", "-C", ROOT, "help"], capture_output=True, text=True, env=make_env())
    assert r.returncode == 0
    with open(os.path.join(ROOT, "Makefile")) as f:
        phony = re.search(r"^\.PHONY:(.*)$", f.read(), re.M).group(1).split()
    for target in phony:
        assert re.search(r"^make %s " % target, r.stdout, re.M), "make help misses %s" % target
    for option in ("PORT=", "BIND=", "HEAP=", "CONFIG=", "DEVICE=", "SSID=", "PASSWORD=", "MPY=1",
                   "DRY_RUN=1", "DEPLOY_ARGS=", "PYTEST_ARGS=", "BENCH_ARGS=", "FRESH=1", "NAME=",
                   "REVOKE=1", "KEYS_DIR="):
        assert option in r.stdout, option


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_a_partial_console_line_never_stalls_the_server(firmware, interpreter):
    fw = firmware(interpreter=interpreter)
    c = fw.client()
    fw.proc.stdin.write("pre")  # no newline yet: the console must not sit in a blocking read
    fw.proc.stdin.flush()
    assert c.request(coap.GET).payload == b"OFF"
    assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
    fw.proc.stdin.write("ss\n")
    fw.proc.stdin.flush()
    fw.wait_for("[sim] input GPIO0 pressed")
    fw.console("state")
    fw.wait_for("[sim] alarm ON")
    c.close()


def test_the_board_files_outlive_a_restart_on_the_same_port_and_fresh_wipes_them(tmp_path):
    # Like a board's flash: the alarm state written with persist on comes back after a restart
    # of the sim on the same port; `make sim FRESH=1` starts from an empty board.
    path = tmp_path / "my.json"
    path.write_text(json.dumps({"persist": True}))
    port = free_udp_port()
    board = os.path.join(os.environ["COAP_ALARM_SIM_DIR"], str(port))

    def start(*extra, make=False):
        if make:
            return start_process([tool("make"), "-s", "-C", ROOT, "sim", "PORT=%d" % port,
                                  "CONFIG=" + str(path)] + list(extra), env=make_env())
        return start_sim("--port", str(port), "--config", str(path), *extra)

    p, lines = start()
    try:
        assert "sim: the board's files are kept in %s/ across restarts (make sim FRESH=1 starts clean)\n" \
            % board in lines, lines
        c = Client(port)
        assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
        c.close()
    finally:
        ctrl_c(p)
    assert "alarm_state.json" in os.listdir(board) and "config.json" in os.listdir(board)
    p, lines = start()
    try:
        assert any("are kept in %s/ from the last run on this port" % board in l for l in lines), lines
        c = Client(port)
        assert c.request(coap.GET).payload == b"ON"
        c.close()
    finally:
        ctrl_c(p)
    with open(os.path.join(board, "leftover.json"), "w") as f:   # e.g. oscore_seq.json
        f.write("{}")
    p, lines = start("FRESH=1", make=True)
    try:
        assert any("across restarts (make sim FRESH=1 starts clean)" in l for l in lines), lines
        assert "leftover.json" not in os.listdir(board)
        c = Client(port)
        assert c.request(coap.GET).payload == b"OFF"
        c.close()
    finally:
        ctrl_c(p)


@needs_oscore_firmware
def test_the_sims_oscore_sequence_file_outlives_a_restart(tmp_path):
    # make keys, make sim CONFIG=...: a protected PUT; after a restart on the same port the
    # board's sequence-number file is still there (and moved on), and the same key works again.
    port, config, creds = provision_clients(tmp_path, ("laptop",))
    path = tmp_path / "config.json"
    board = os.path.join(os.environ["COAP_ALARM_SIM_DIR"], str(port))
    uri = "coap://127.0.0.1:%d/alarm" % port
    seen = []
    for word in ("ON", "OFF"):
        p, lines = start_sim("--port", str(port), "--config", str(path))
        try:
            assert "sim: OSCORE keys in the config for: laptop (their credentials: " \
                   "keys/NAME/credentials.json)\n" in lines, lines
            assert run_alarmctl("--credentials", creds["laptop"], "put", uri, word) == (0, word + "\n", "")
        finally:
            ctrl_c(p)
        with open(os.path.join(board, "oscore_seq.json")) as f:
            seen.append(f.read())
    assert seen[0] != seen[1], seen
