# What keeps the firmware small on a board: numbers folded into each module's bytecode (and
# right), boot-only code freed after boot, rarely used code loaded only on first use.
import glob
import os
import re
import subprocess

from host import coapmsg as coap
from harness import ROOT, free_udp_port, tool


def test_every_folded_coap_number_matches_the_public_one():
    # Each firmware module keeps the CoAP numbers it uses as private const()s: check them all.
    checked = 0
    for path in glob.glob(os.path.join(ROOT, "firmware", "*.py")):
        with open(path) as f:
            src = f.read()
        for name, value in re.findall(r"^_([A-Z][A-Z_0-9]*) = const\((\w+)\)", src, re.M):
            public = getattr(coap, name, None)
            if isinstance(public, int):
                assert int(value, 0) == public, "%s: _%s" % (os.path.basename(path), name)
                checked += 1
    assert checked > 50


def test_boot_code_is_freed_under_micropython(tmp_path):
    # main.py's steps, without serving: after start.main() neither sys.modules nor the package
    # may keep start.py, the config validator or the multicast set-up.
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import firmware\n"
            "from firmware import start\n"
            "serve = start.main()\n"
            "del start\n"
            "left = [m for m in ('start', 'config', 'board') if 'firmware.' + m in sys.modules "
            "or hasattr(firmware, m)]\n"
            "print('LEFT', left, callable(serve))\n") % ROOT
    cfg = tmp_path / "config.json"
    cfg.write_text('{"bind": "127.0.0.1", "port": %d, "log_level": "warning"}' % free_udp_port())
    out = subprocess.run([tool("micropython"), "-c", code], capture_output=True, text=True, timeout=20,
                         env=dict(os.environ, COAP_ALARM_CONFIG=str(cfg))).stdout
    assert "LEFT [] True" in out, out
