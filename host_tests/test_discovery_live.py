# The firmware under the MicroPython VM against real peers: libcoap's coap-client, aiocoap,
# aiocoap-rd, and multicast on loopback.
import asyncio
import json
import socket
import subprocess
import time

import cbor2
import pytest

from host import coapmsg as coap
from harness import Client, free_udp_port, request, tool, GROUP, _multicast_sender



def coap_client(*args, timeout=20, tmp=None):
    """Run libcoap's client; returns (payload, log). With tmp, the payload goes through a file,
    so that it stays apart from -v debug output."""
    extra = []
    if tmp is not None:
        body = tmp / "coap-client.out"
        extra = ["-o", str(body)]
    r = subprocess.run([tool("coap-client-notls"), "-B", "5"] + extra + list(args), capture_output=True,
                       timeout=timeout)
    if tmp is not None:
        return (body.read_bytes() if body.exists() else b""), r.stdout + r.stderr
    return r.stdout, r.stdout + r.stderr


def aiocoap_requests(*msgs):
    """Send aiocoap Messages one after another with a real aiocoap client; returns the responses."""
    import aiocoap

    async def go():
        ctx = await aiocoap.Context.create_client_context()
        try:
            return [await asyncio.wait_for(ctx.request(m).response, 20) for m in msgs]
        finally:
            await ctx.shutdown()
    return asyncio.run(go())


def url(fw, path):
    return "coap://127.0.0.1:%d/%s" % (fw.port, path)


def test_formats_with_coap_client(firmware):
    fw = firmware()
    out, _ = coap_client("-m", "put", "-t", "50", "-e", '{"on":true}', url(fw, "alarm"))
    assert json.loads(out)["on"] is True
    out, _ = coap_client("-A", "60", url(fw, "alarm"))
    doc = cbor2.loads(out[:-1])      # coap-client adds a newline
    assert doc["on"] is True and doc["source"] == "put" and isinstance(doc["changed"], int)
    out, _ = coap_client("-A", "0", url(fw, "alarm"))
    assert out.strip() == b"ON"
    out, log = coap_client("-A", "41", url(fw, "alarm"))
    assert b"4.06" in log


def test_formats_and_health_with_aiocoap(firmware):
    import aiocoap
    fw = firmware()
    put = aiocoap.Message(code=aiocoap.PUT, uri=url(fw, "alarm"), payload=cbor2.dumps({"on": True}),
                          content_format=60)
    get_json = aiocoap.Message(code=aiocoap.GET, uri=url(fw, "alarm"), accept=50)
    health = aiocoap.Message(code=aiocoap.GET, uri=url(fw, "health"), accept=60)
    bad = aiocoap.Message(code=aiocoap.GET, uri=url(fw, "health"), accept=0)
    r_put, r_json, r_health, r_bad = aiocoap_requests(put, get_json, health, bad)
    assert r_put.code == aiocoap.CHANGED
    assert r_json.opt.content_format == 50 and json.loads(r_json.payload)["on"] is True
    h = cbor2.loads(r_health.payload)
    assert h["version"] and h["rssi"] is None and h["observers"] == 0
    assert isinstance(h["heap"], int) and h["heap"] > 0 and isinstance(h["uptime"], int)
    assert r_bad.code == aiocoap.NOT_ACCEPTABLE
    fw.wait_for("output GPIO2 = 1")


def test_observer_keeps_cbor_under_the_vm(firmware):
    fw = firmware()
    c = fw.client()
    r = c.request(coap.GET, token=b"ob", options=[(coap.OBSERVE, 0), (coap.ACCEPT, 60)])
    assert cbor2.loads(r.payload)["on"] is False
    fw.console("on")
    n = c.recv(5)
    assert n.token == b"ob" and n.opt_uint(coap.CONTENT_FORMAT) == 60
    assert cbor2.loads(n.payload)["on"] is True
    c.close()


def test_health_observed_under_the_vm(firmware):
    fw = firmware(health_period_s=1)
    c = fw.client()
    # The answer comes block-wise (3x the request at most, RFC 7252 11.3): read it whole.
    r = c.whole(coap.GET, "health", token=b"hh", options=[(coap.OBSERVE, 0), (coap.ACCEPT, 60)])
    assert r.opt_uint(coap.OBSERVE) is not None and cbor2.loads(r.payload)["version"]
    n = c.recv(4)                       # the app's periodic health notification
    assert n.token == b"hh" and n.opt_uint(coap.CONTENT_FORMAT) == 60
    h = cbor2.loads(n.payload)
    assert h["uptime"] >= 1 and h["observers"] == 1
    c.close()


def test_wellknown_filters_under_the_vm(firmware):
    fw = firmware()
    out, _ = coap_client(url(fw, ".well-known/core?rt=alarm"))
    assert out.strip() == b'</alarm>;rt="alarm";if="core.a";ct="0 50 60";obs'
    out, _ = coap_client(url(fw, ".well-known/core?href=/health*"))
    assert out.startswith(b"</health>;") and b"alarm" not in out
    out, _ = coap_client(url(fw, ".well-known/core?obs"))
    assert out.count(b";obs") == 2


def test_block2_with_coap_client_and_aiocoap(firmware, tmp_path):
    import aiocoap
    from aiocoap.optiontypes import BlockOption
    fw = firmware()
    whole, _ = coap_client(url(fw, ".well-known/core"))
    out, log = coap_client("-v", "7", "-b", "16", url(fw, ".well-known/core"), tmp=tmp_path)
    assert out + b"\n" == whole and log.count(b"Block2:") >= 2 * (len(whole) // 16)
    m = aiocoap.Message(code=aiocoap.GET, uri=url(fw, ".well-known/core"))
    m.opt.block2 = BlockOption.BlockwiseTuple(0, False, 0)    # early negotiation, 16-byte blocks
    m2 = aiocoap.Message(code=aiocoap.GET, uri=url(fw, "health"), accept=50)
    m2.opt.block2 = BlockOption.BlockwiseTuple(0, False, 1)
    r, r2 = aiocoap_requests(m, m2)
    assert r.payload + b"\n" == whole and r.opt.block2.size_exponent == 0
    assert json.loads(r2.payload)["version"]


def test_block1_with_coap_client_and_aiocoap(firmware, tmp_path):
    import aiocoap
    fw = firmware(max_payload=200)
    body = '{"on": true' + " " * 60 + "}"
    out, log = coap_client("-v", "7", "-b", "16", "-m", "put", "-t", "50", "-e", body, url(fw, "alarm"),
                           tmp=tmp_path)
    assert b"2.31" in log and log.count(b"Block1:") >= 5
    assert json.loads(out)["on"] is True
    fw.wait_for("output GPIO2 = 1")
    big = aiocoap.Message(code=aiocoap.PUT, uri=url(fw, "alarm"), payload=b"x" * 1100)
    r, = aiocoap_requests(big)
    assert r.code == aiocoap.REQUEST_ENTITY_TOO_LARGE and r.opt.size1 == 200


# -- multicast ------------------------------------------------------------------------------

def test_multicast_discovery_under_the_vm(firmware, loopback_multicast):
    fw = firmware(multicast_leisure_ms=300)
    assert any("joined 224.0.1.187" in line for line in fw.output)   # joined by the VM's socket code
    tx = _multicast_sender()
    try:
        # Requests it cannot serve first: none of them may be answered.
        tx.sendto(request(coap.GET, "nope", mtype=coap.NON, mid=1, token=b"n1"), (GROUP, fw.port))
        tx.sendto(request(coap.GET, ".well-known/core", mtype=coap.NON, mid=2, token=b"n2",
                          options=[(coap.URI_QUERY, b"rt=thermostat")]), (GROUP, fw.port))
        tx.sendto(request(coap.GET, ".well-known/core", mtype=coap.NON, mid=3, token=b"ok",
                          options=[(coap.URI_QUERY, b"rt=alarm")]), (GROUP, fw.port))
        tx.settimeout(3)
        sent = time.monotonic()
        data, addr = tx.recvfrom(2048)
        r = coap.parse(data)
        assert addr == ("127.0.0.1", fw.port)    # from its unicast address, not the group
        assert r.token == b"ok" and r.code == coap.CONTENT and r.mtype == coap.NON
        assert r.payload.startswith(b"</alarm>") and time.monotonic() - sent < 3
        # All three have had their leisure (<= 300 ms) by now plus a margin: nothing else comes.
        tx.settimeout(0.6)
        with pytest.raises(socket.timeout):
            tx.recvfrom(2048)
    finally:
        tx.close()
    # Unicast is untouched by the group socket.
    c = fw.client()
    assert c.request(coap.GET, "nope").code == coap.NOT_FOUND
    c.close()


@pytest.mark.parametrize("join", [True, False])
def test_wildcard_socket_ignores_group_traffic(firmware, loopback_multicast, join):
    # Another program on this host joins the group on lo, so the kernel accepts group datagrams
    # there; the firmware's wildcard-bound unicast socket must still not see (and 4.04) them.
    fw = firmware(bind="0.0.0.0", multicast=join, multicast_leisure_ms=100)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = _multicast_sender()
    try:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind((GROUP, fw.port))
        other.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                         socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"))
        tx.sendto(request(coap.GET, "nope", mtype=coap.NON, token=b"nf"), (GROUP, fw.port))
        other.settimeout(2)
        other.recvfrom(2048)            # the datagram was delivered on this host
        tx.settimeout(0.5)
        with pytest.raises(socket.timeout):
            tx.recvfrom(2048)
    finally:
        other.close()
        tx.close()
    c = fw.client()
    assert c.request(coap.GET, "alarm").payload == b"OFF"
    c.close()


# -- Resource Directory ---------------------------------------------------------------------

class Directory:
    """aiocoap-rd on a free loopback port; (re)started by the test."""

    def __init__(self):
        self.port = free_udp_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([tool("aiocoap-rd"), "--bind", "127.0.0.1:%d" % self.port],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c = Client(self.port)
        try:
            for _ in range(40):         # ready when it answers (bounded: about 10 s)
                try:
                    c.request(coap.GET, ".well-known/core", timeout=0.25)
                    return self
                except socket.timeout:
                    assert self.proc.poll() is None, "aiocoap-rd exited"
            raise AssertionError("aiocoap-rd never answered")
        finally:
            c.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def lookup(self, what):
        c = Client(self.port)
        try:
            path, _, query = what.partition("?")
            msg = coap.Message(coap.CON, coap.GET, c.next_mid(), b"lk")
            for seg in path.split("/"):
                msg.add(coap.URI_PATH, seg.encode())
            for q in query.split("&") if query else ():
                msg.add(coap.URI_QUERY, q.encode())
            c.send(coap.encode(msg))
            r = c.recv(5)
            assert r.code == coap.CONTENT, r
            return r.payload.decode()
        finally:
            c.close()


@pytest.fixture
def directory():
    d = Directory()
    yield d
    d.stop()


def test_registers_at_aiocoap_rd_refreshes_and_comes_back(firmware, directory):
    directory.start()
    fw = firmware(rd_host="127.0.0.1", rd_port=directory.port, rd_ep="alarm-kitchen", rd_lifetime_s=4)
    fw.wait_for("rd: registered", 10)
    links = directory.lookup("resource-lookup/?rt=alarm")
    assert "coap://127.0.0.1:%d/alarm" % fw.port in links
    assert "alarm-kitchen" in directory.lookup("endpoint-lookup/?ep=alarm-kitchen")
    fw.wait_for("rd: registration refreshed", 8)          # at 3/4 of the 4 s lifetime
    # The directory restarts and forgets everyone: the next refresh is refused, and it registers again.
    directory.stop()
    directory.start()
    fw.wait_for("rd: registered", 10)
    assert "coap://127.0.0.1:%d/alarm" % fw.port in directory.lookup("resource-lookup/?rt=alarm")


def test_registers_at_libcoap_rd(firmware):
    # libcoap's directory has no lookup interface; its registration resource returns our links.
    port = free_udp_port()
    rd = subprocess.Popen([tool("coap-rd-notls"), "-A", "127.0.0.1", "-p", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fw = firmware(rd_host="127.0.0.1", rd_port=port, rd_ep="alarm-hall")
        line = fw.wait_for("rd: registered as /", 10)
        location = line.split("registered as /", 1)[1].strip()
        assert location.startswith("rd/")       # found through /.well-known/core?rt=core.rd
        c = Client(port)
        try:
            r = c.request(coap.GET, location)
            assert r.code == coap.CONTENT and r.payload.startswith(b'</alarm>;rt="alarm"')
            assert b"</health>" in r.payload
        finally:
            c.close()
    finally:
        rd.terminate()
        rd.wait(5)
