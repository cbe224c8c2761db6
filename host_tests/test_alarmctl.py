# tools/alarmctl.py against the real firmware under the MicroPython VM, without keys: what a
# user sees, every notification of an observation included (aiocoap-client 0.4.17 prints only
# the first: aiocoap#395). With keys: test_keys.py.
import json
import subprocess
import sys

import pytest

from harness import ALARMCTL, free_udp_port, parse_links, run_alarmctl
from host import coapmsg as coap


def test_get_and_put(firmware):
    fw = firmware()
    uri = "coap://127.0.0.1:%d/alarm" % fw.port
    assert run_alarmctl("get", uri) == (0, "OFF\n", "")
    assert run_alarmctl("put", uri, "on") == (0, "ON\n", "")
    c = fw.client()
    assert c.request(coap.GET).payload == b"ON"
    c.close()
    # Just the address: /alarm.
    assert run_alarmctl("put", "127.0.0.1:%d" % fw.port, "OFF") == (0, "OFF\n", "")


@pytest.mark.parametrize("accept", ["json", "cbor"])
def test_get_in_json_and_cbor(firmware, accept):
    fw = firmware()
    rc, out, err = run_alarmctl("--accept", accept, "get", "127.0.0.1:%d" % fw.port)
    assert rc == 0, err
    assert json.loads(out)["on"] is False


def test_discover_lists_one_link_a_line(firmware):
    fw = firmware()
    rc, out, err = run_alarmctl("discover", "127.0.0.1:%d" % fw.port)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("</alarm>;") and len(lines) >= 2
    assert parse_links(",".join(lines).encode())["/alarm"]["rt"] == "alarm"


def test_observe_prints_every_notification(firmware):
    fw = firmware()
    uri = "coap://127.0.0.1:%d/alarm" % fw.port
    obs = subprocess.Popen([sys.executable, ALARMCTL, "observe", uri, "--count", "5", "--timeout", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert obs.stdout.readline() == "OFF\n"
        fw.wait_for("observer 127.0.0.1:", timeout=10)
        c = fw.client()
        for word in (b"ON", b"OFF", b"ON", b"OFF"):   # one at a time: faster ones are coalesced
            assert c.request(coap.PUT, payload=word).code == coap.CHANGED
            assert obs.stdout.readline() == word.decode() + "\n"
        c.close()
        assert obs.wait(15) == 0, obs.stderr.read()   # --count 5: done
    finally:
        obs.kill()
        obs.wait()


def test_observe_stops_after_its_timeout(firmware):
    fw = firmware()
    rc, out, err = run_alarmctl("observe", "127.0.0.1:%d" % fw.port, "--timeout", "1")
    assert (rc, out) == (0, "OFF\n"), err


def test_an_error_answer_is_printed_with_exit_code_1(firmware):
    fw = firmware()
    rc, out, err = run_alarmctl("get", "coap://127.0.0.1:%d/nothing" % fw.port)
    assert rc == 1 and out == ""
    assert err == "alarmctl: coap://127.0.0.1:%d/nothing: 4.04 Not Found\n" % fw.port


def test_nobody_there_is_exit_code_3():
    port = free_udp_port()
    rc, out, err = run_alarmctl("get", "127.0.0.1:%d" % port, "--timeout", "5")
    assert rc == 3 and err.startswith("alarmctl: no answer from coap://127.0.0.1:%d/alarm" % port)
    assert "is the board on, and the address and port right?" in err and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["put", "127.0.0.1", "maybe"], "put takes ON or OFF, not 'maybe'"),
    (["get", "http://127.0.0.1/alarm"], "is not a coap:// URI nor a board's address"),
    (["observe", "127.0.0.1", "--count", "0"], "--count must be 1 or more"),
    (["frobnicate", "127.0.0.1"], "invalid choice: 'frobnicate'"),
])
def test_command_line_mistakes_are_exit_code_2(args, message):
    rc, out, err = run_alarmctl(*args)
    assert rc == 2 and message in err and "Traceback" not in err, err
