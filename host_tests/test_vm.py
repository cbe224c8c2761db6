# The same behaviour under the real MicroPython VM: main.py run by `micropython`, driven over UDP.
import socket

import pytest

from host import coapmsg as coap
from harness import Client, assert_alarm_link, request


@pytest.fixture
def fw(firmware):
    return firmware(max_observers=2)


def test_get_put_and_errors(fw):
    c = fw.client()
    r = c.request(coap.GET)
    assert (r.mtype, r.code, r.payload, r.opt_uint(coap.CONTENT_FORMAT)) == (coap.ACK, coap.CONTENT, b"OFF", 0)
    r = c.request(coap.PUT, payload=b" on ")
    assert (r.code, r.payload) == (coap.CHANGED, b"ON")
    fw.wait_for("output GPIO2 = 1")
    assert c.request(coap.PUT, payload=b"maybe").code == coap.BAD_REQUEST
    assert c.request(coap.PUT, payload=b"OFF", options=[(coap.CONTENT_FORMAT, 41)]).code \
        == coap.UNSUPPORTED_CONTENT_FORMAT
    assert c.request(coap.POST, payload=b"OFF").code == coap.METHOD_NOT_ALLOWED
    assert c.request(coap.GET, path="nope").code == coap.NOT_FOUND
    assert c.request(coap.GET, options=[(9, b"x")]).code == coap.BAD_OPTION
    assert c.request(coap.GET).payload == b"ON"
    r = c.request(coap.GET, mtype=coap.NON, token=b"nn")
    assert (r.mtype, r.token, r.payload) == (coap.NON, b"nn", b"ON")


def test_ping_malformed_and_duplicates(fw):
    c = fw.client()
    c.send(bytes([0x40, 0, 0xAB, 0xCD]))
    r = c.recv()
    assert (r.mtype, r.mid) == (coap.RST, 0xABCD)
    for junk in (b"\x40\x01\x00\x07\xf0", b"\x49\x01\x00\x07" + b"\x00" * 9, b"\x40\x01\x00\x07\xff"):
        c.send(junk)
        r = c.recv()
        assert (r.mtype, r.mid) == (coap.RST, 7)
    c.send(b"\x80garbage")
    c.send(b"")
    put = request(coap.PUT, mid=500, token=b"d", payload=b"ON")
    c.send(put)
    first = c.recv()
    c.send(request(coap.PUT, mid=501, token=b"e", payload=b"OFF"))
    assert c.recv().payload == b"OFF"
    c.send(put)  # retransmission of the first PUT: same answer, not applied again
    again = c.recv()
    assert again == first and again.payload == b"ON"
    assert c.request(coap.GET).payload == b"OFF"
    assert fw.alive()


def test_discovery(fw):
    r = fw.client().whole(coap.GET, path=".well-known/core")   # block-wise: 3x the request at most
    assert r.opt_uint(coap.CONTENT_FORMAT) == coap.LINK_FORMAT
    assert_alarm_link(r.payload)


def test_observe_put_pin_deregister_and_capacity(fw):
    o1, o2, o3, putter = Client(fw.port), Client(fw.port), Client(fw.port), fw.client()
    r1 = o1.request(coap.GET, token=b"o1", options=[(coap.OBSERVE, 0)])
    r2 = o2.request(coap.GET, token=b"o2", options=[(coap.OBSERVE, 0)])
    assert r1.opt(coap.OBSERVE) is not None and r2.opt(coap.OBSERVE) is not None

    assert putter.request(coap.PUT, payload=b"ON").code == coap.CHANGED
    n1 = o1.ack(o1.recv())   # the first notification is a CON: its ACK proves the address
    assert (n1.token, n1.payload, n1.mtype) == (b"o1", b"ON", coap.CON)
    assert n1.opt_uint(coap.OBSERVE) > r1.opt_uint(coap.OBSERVE)
    assert o2.ack(o2.recv()).payload == b"ON"
    # The table (2) is full of observers that have proved their address: o3 gets a plain answer.
    r3 = o3.request(coap.GET, token=b"o3", options=[(coap.OBSERVE, 0)])
    assert r3.code == coap.CONTENT and r3.opt(coap.OBSERVE) is None

    putter.request(coap.PUT, payload=b"OFF")
    assert o1.recv().payload == b"OFF" and o2.recv().payload == b"OFF"
    fw.console("press")  # the board's input pin raises the alarm
    n = o1.recv()
    assert (n.token, n.payload) == (b"o1", b"ON")
    assert o2.recv().payload == b"ON"
    fw.console("release")

    # o1 deregisters with Observe=1; o2 is forgotten by an RST to its next notification
    r = o1.request(coap.GET, token=b"o1", options=[(coap.OBSERVE, 1)])
    assert r.opt(coap.OBSERVE) is None
    putter.request(coap.PUT, payload=b"OFF")
    n = o2.recv()
    o2.send(bytes([0x70, 0, n.mid >> 8, n.mid & 0xFF]))
    fw.wait_for("reset by client")
    with pytest.raises(socket.timeout):
        o1.recv(timeout=0.3)  # nothing for the deregistered observer

    # both slots are free again: o3 can register now
    r3 = o3.request(coap.GET, token=b"o3", options=[(coap.OBSERVE, 0)])
    assert r3.opt(coap.OBSERVE) is not None
    putter.request(coap.PUT, payload=b"ON")
    assert o3.recv().payload == b"ON"


def test_cpython_runs_the_same_main(firmware):
    fw = firmware(interpreter="cpython")
    c = fw.client()
    assert c.request(coap.PUT, payload=b"ON").payload == b"ON"
    assert c.request(coap.GET).payload == b"ON"


def test_a_micropython_without_the_asyncio_internal_fails_at_import_and_says_why():
    # The firmware's one use of a MicroPython internal is checked when compat loads: a future
    # MicroPython without it stops the boot with a message, not deep in the receive loop.
    import subprocess
    from harness import ROOT, tool
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import asyncio.core; delattr(asyncio.core, '_io_queue')\n"
            "import firmware.compat\n") % ROOT
    r = subprocess.run([tool("micropython"), "-c", code], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "needs asyncio.core._io_queue.queue_read" in r.stdout + r.stderr
    assert "tested with MicroPython 1.29" in r.stdout + r.stderr
