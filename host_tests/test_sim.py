# `make sim` runs tools/sim.py: the real main.py under micropython with simulated pins.
import os
import subprocess
import sys

import pytest

from host import coapmsg as coap
from harness import ROOT, Client, free_udp_port


def start_sim(*args):
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "sim.py")] + list(args),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if "serving coap://" in line:
            return p, line
    raise AssertionError("sim did not start:\n" + "".join(lines))


@pytest.mark.parametrize("heap", [None, "256k"])
def test_sim_serves_alarm_and_pins_can_be_driven(heap):
    port = free_udp_port()
    args = ["--port", str(port)] + (["--heap", heap] if heap else [])
    p, banner = start_sim(*args)
    try:
        assert "coap://127.0.0.1:%d/alarm" % port in banner
        c = Client(port)
        assert c.request(coap.GET).payload == b"OFF"
        p.stdin.write("press\n")
        p.stdin.flush()
        for line in p.stdout:
            if "output GPIO2 = 1" in line:
                break
        assert c.request(coap.GET).payload == b"ON"
    finally:
        p.kill()
        p.wait()


def test_sim_rejects_a_bad_port():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sim.py"), "--port", "70000"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "--port must be from 1 to 65535" in p.stderr
