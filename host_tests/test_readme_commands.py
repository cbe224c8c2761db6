# The commands the README and the flash guide show, run as written (only the address and port
# are this test's own): what a user copies must work.
import os
import pty
import re
import shlex
import subprocess

import pytest

from host import coapmsg as coap
from harness import ROOT, tool

DOCS = ("README.md", os.path.join("docs", "flash-a-board.md"))


def read_until(fd, text, timeout):
    """What fd gives, white space left out, until text shows up or the time is over."""
    import select
    import time
    got = ""
    deadline = time.monotonic() + timeout
    while text not in got:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        try:
            data = os.read(fd, 1024)
        except OSError:  # the command ended and closed its terminal
            break
        got += re.sub(r"\s", "", data.decode(errors="replace"))  # values come unseparated
    return got


def observe_commands():
    """Every observe command in the docs: (where, command line)."""
    found = []
    for doc in DOCS:
        with open(os.path.join(ROOT, doc)) as f:
            text = f.read()
        for m in re.finditer(r"((?:coap-client-notls -s|\S*aiocoap-client --observe) [^`\n#]*coap://[^\s`]+)", text):
            found.append((doc, m.group(1).strip()))
    return found


def test_the_docs_show_observe_commands():
    assert len(observe_commands()) >= 3


@pytest.mark.parametrize("doc, command", observe_commands(), ids=lambda v: v)
def test_every_observe_command_in_the_docs_sees_two_changes(firmware, doc, command):
    fw = firmware()
    argv = shlex.split(re.sub(r"coap://[^/]+/", "coap://127.0.0.1:%d/" % fw.port, command))
    argv[0] = tool(os.path.basename(argv[0]))
    # A terminal for its output, as a user has: libcoap writes each value as it comes.
    master, slave = pty.openpty()
    obs = subprocess.Popen(argv, stdout=slave, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    os.close(slave)
    try:
        fw.wait_for("observer 127.0.0.1:", timeout=10)
        c = fw.client()
        # One change at a time: changes faster than notifications are coalesced (latest wins).
        assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
        out = read_until(master, "OFFON", 10)
        assert c.request(coap.PUT, payload=b"OFF").code == coap.CHANGED
        out += read_until(master, "OFF", 10)
        c.close()
    finally:
        obs.kill()  # the user's Ctrl-C, before the command's own 60 s are up
        obs.wait()
        os.close(master)
    # The first value, then both changes (libcoap prints them without a separator).
    assert "OFFONOFF" in out, (command, out)
