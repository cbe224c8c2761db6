# /alarm content negotiation, /health and link-format filters, through the shim (FakeSocket/FakeClock).
import json

import cbor2
import pytest

from firmware import cbor, cbor_read
from host import coapmsg as coap
from harness import PEER, ask_whole, full_server, request


def ask(server, sock, *args, **kw):
    # The whole answer, as a client reads it: a body over 3x the request comes block-wise
    # (RFC 7252 11.3). One reply per request (ask_whole checks).
    addr = kw.pop("addr", PEER)
    return ask_whole(server, sock, request(*args, **kw), addr)


@pytest.fixture
def srv():
    return full_server()


def test_get_each_format(srv):
    server, alarm, sock, clock, _ = srv
    clock.advance(5000)
    alarm.set(True, "pin")
    r = ask(server, sock, coap.GET, options=[(coap.ACCEPT, 0)])
    assert (r.code, r.opt_uint(coap.CONTENT_FORMAT), r.payload) == (coap.CONTENT, 0, b"ON")
    r = ask(server, sock, coap.GET, mid=2, options=[(coap.ACCEPT, 50)])
    assert r.opt_uint(coap.CONTENT_FORMAT) == 50
    assert json.loads(r.payload) == {"on": True, "changed": 5, "source": "pin"}
    r = ask(server, sock, coap.GET, mid=3, options=[(coap.ACCEPT, 60)])
    assert r.opt_uint(coap.CONTENT_FORMAT) == 60
    assert cbor2.loads(r.payload) == {"on": True, "changed": 5, "source": "pin"}
    r = ask(server, sock, coap.GET, mid=4)
    assert r.payload == b"ON" and r.opt_uint(coap.CONTENT_FORMAT) == 0


def test_unsupported_accept_is_406(srv):
    server, _, sock, _, _ = srv
    for mid, fmt in enumerate((40, 41, 110, 65000), 1):
        r = ask(server, sock, coap.GET, mid=mid, options=[(coap.ACCEPT, fmt)])
        assert r.code == coap.NOT_ACCEPTABLE


@pytest.mark.parametrize("cf,body,want", [
    (0, b"on", True), (None, b" OFF\n", False),
    (50, b'{"on": true}', True), (50, b"false", False),
    (60, cbor2.dumps({"on": True}), True), (60, cbor2.dumps(False), False),
    (60, cbor2.dumps({"on": False, "extra": [1, 2]}), None),   # nested arrays are not read
    (50, b'{"on": 1}', None), (50, b"{", None), (60, b"\xa1", None), (60, b"\xff", None),
    (0, b"maybe", None),
])
def test_put_formats(srv, cf, body, want):
    server, alarm, sock, _, _ = srv
    alarm.set(not want if want is not None else False, "test")
    opts = [] if cf is None else [(coap.CONTENT_FORMAT, cf)]
    r = ask(server, sock, coap.PUT, payload=body, options=opts)
    if want is None:
        assert r.code == coap.BAD_REQUEST
    else:
        assert r.code == coap.CHANGED and alarm.on is want
        assert r.opt_uint(coap.CONTENT_FORMAT, 0) == (cf or 0)


def test_put_answer_follows_accept_and_bad_format(srv):
    server, alarm, sock, _, _ = srv
    r = ask(server, sock, coap.PUT, payload=b"ON", options=[(coap.ACCEPT, 60)])
    assert r.code == coap.CHANGED and cbor2.loads(r.payload)["on"] is True
    r = ask(server, sock, coap.PUT, mid=2, payload=b"<on/>", options=[(coap.CONTENT_FORMAT, 41)])
    assert r.code == coap.UNSUPPORTED_CONTENT_FORMAT


def test_observer_keeps_its_format(srv):
    server, alarm, sock, clock, _ = srv
    server.datagram(request(coap.GET, token=b"J", options=[(coap.OBSERVE, 0), (coap.ACCEPT, 50)]), PEER)
    server.datagram(request(coap.GET, mid=2, token=b"C", options=[(coap.OBSERVE, 0), (coap.ACCEPT, 60)]),
                    ("127.0.0.1", 40001))
    server.datagram(request(coap.GET, mid=3, token=b"T", options=[(coap.OBSERVE, 0)]), ("127.0.0.1", 40002))
    sock.take()
    clock.advance(2000)
    alarm.set(True, "put")
    server.service()
    got = {m.token: m for m, _ in sock.take()}
    assert json.loads(got[b"J"].payload)["on"] is True and got[b"J"].opt_uint(coap.CONTENT_FORMAT) == 50
    assert cbor2.loads(got[b"C"].payload) == {"on": True, "changed": 2, "source": "put"}
    assert got[b"T"].payload == b"ON"


def test_health(srv):
    server, _, sock, clock, _ = srv
    server.datagram(request(coap.GET, "alarm", token=b"o", options=[(coap.OBSERVE, 0)]), PEER)
    sock.take()
    clock.advance(61500)
    r = ask(server, sock, coap.GET, "health", mid=2)
    assert r.opt_uint(coap.CONTENT_FORMAT) == 50
    assert json.loads(r.payload) == {"uptime": 61, "heap": None, "observers": 1, "rssi": None,
                                     "store": "off", "version": "9.9.9", "reset": None, "security": "open"}
    r = ask(server, sock, coap.GET, "health", mid=3, options=[(coap.ACCEPT, 60)])
    assert cbor2.loads(r.payload)["observers"] == 1
    assert ask(server, sock, coap.GET, "health", mid=4, options=[(coap.ACCEPT, 0)]).code == coap.NOT_ACCEPTABLE
    assert ask(server, sock, coap.PUT, "health", mid=5, payload=b"x").code == coap.METHOD_NOT_ALLOWED


def test_health_is_observable(srv):
    server, _, sock, clock, health = srv
    r = ask(server, sock, coap.GET, "health", options=[(coap.OBSERVE, 0), (coap.ACCEPT, 60)])
    assert r.opt_uint(coap.OBSERVE) is not None
    clock.advance(3000)
    health.notify()   # what the app does every health_period_s
    server.service()
    (n, _), = sock.take()
    assert cbor2.loads(n.payload)["uptime"] == 3


def _links(payload):
    return sorted(payload.decode().split(",")) if payload else []


@pytest.mark.parametrize("query,hrefs", [
    ([], ["</alarm>", "</health>"]),
    (["rt=alarm"], ["</alarm>"]),
    (["rt=health"], ["</health>"]),
    (["rt=al*"], ["</alarm>"]),
    (["href=/alarm*"], ["</alarm>"]),
    (["href=/health"], ["</health>"]),
    (["obs"], ["</alarm>", "</health>"]),
    (["ct=60"], ["</alarm>", "</health>"]),
    (["ct=0"], ["</alarm>"]),
    (["if=core.a"], ["</alarm>"]),
    (["rt=alarm", "ct=50"], ["</alarm>"]),
    (["rt=nothing"], []),
    (["title"], []),
])
def test_wellknown_filters(srv, query, hrefs):
    server, _, sock, _, _ = srv
    r = ask(server, sock, coap.GET, ".well-known/core", options=[(coap.URI_QUERY, q.encode()) for q in query])
    assert r.code == coap.CONTENT and r.opt_uint(coap.CONTENT_FORMAT) == 40
    assert [l.split(";")[0] for l in _links(r.payload)] == hrefs


def test_cbor_roundtrip_against_cbor2():
    for pairs in ([("a", 0), ("b", 23), ("c", 24), ("d", 255), ("e", 256), ("f", 65536), ("g", -1),
                   ("h", -300), ("i", None), ("j", "x" * 30), ("k", False)],):
        raw = cbor.dumps_map(pairs)
        assert cbor2.loads(raw) == dict(pairs)
        assert cbor_read.loads(cbor2.dumps(dict(pairs))) == dict(pairs)
    for bad in (b"", b"\xa1\x61", b"\x9f", b"\xa1\x61a\xa0", b"\x1c", b"\xf5\x00", b"\xbb" + b"\xff" * 8):
        with pytest.raises(ValueError):
            cbor_read.loads(bad)
