# Issue 10, finding 4: the board is no reflector. A reply to a source nobody verified is at most
# 3x the request in CoAP bytes (RFC 7252 11.3); a larger body goes block-wise (RFC 7959) and a
# client still reads it whole; error answers lose a diagnostic that would amplify. A protected
# request (the OSCORE layer sets observe.key while it is answered) proved its source: exempt.
import json

import cbor2
import pytest

from host import coapmsg as coap
from harness import PEER, _has_cryptography, ask_whole, fetch_rest, full_server, oscore_server, request


def _raw(code, path="", token=b"", mid=7, mtype=coap.CON, options=(), payload=b""):
    return request(code, path, mtype, mid, token, payload, options)


def _b(num, more, szx):
    return coap.block_encode(num, more, szx)


SHAPES = [
    # (what, request bytes)
    ("a 4-byte GET with no path", _raw(coap.GET)),
    ("a 4-byte NON GET with no path", _raw(coap.GET, mtype=coap.NON)),
    ("a 4-byte PUT with no path", _raw(coap.PUT)),
    ("a CoAP ping", bytes((0x40, 0, 0, 7))),
    ("a malformed CON", bytes((0x40, 1, 0, 7, 0xF0))),
    ("GET /alarm", _raw(coap.GET, "alarm")),
    ("GET /alarm JSON", _raw(coap.GET, "alarm", options=[(coap.ACCEPT, 50)])),
    ("GET /alarm CBOR", _raw(coap.GET, "alarm", options=[(coap.ACCEPT, 60)])),
    ("observe /alarm JSON", _raw(coap.GET, "alarm", options=[(coap.OBSERVE, 0), (coap.ACCEPT, 50)])),
    ("deregister /alarm", _raw(coap.GET, "alarm", options=[(coap.OBSERVE, 1)])),
    ("GET /health", _raw(coap.GET, "health")),
    ("GET /health CBOR", _raw(coap.GET, "health", options=[(coap.ACCEPT, 60)])),
    ("observe /health", _raw(coap.GET, "health", options=[(coap.OBSERVE, 0)])),
    ("observe /health, Block2 szx 6", _raw(coap.GET, "health", options=[(coap.OBSERVE, 0), (coap.BLOCK2, _b(0, 0, 6))])),
    ("NON GET /health", _raw(coap.GET, "health", mtype=coap.NON)),
    ("GET /.well-known/core", _raw(coap.GET, ".well-known/core")),
    ("discovery ?rt=alarm", _raw(coap.GET, ".well-known/core", options=[(coap.URI_QUERY, b"rt=alarm")])),
    ("discovery ?obs", _raw(coap.GET, ".well-known/core", options=[(coap.URI_QUERY, b"obs")])),
    ("discovery ?ct=*", _raw(coap.GET, ".well-known/core", options=[(coap.URI_QUERY, b"ct=*")])),
    ("GET an unknown path", _raw(coap.GET, "x")),
    ("GET a long unknown path", _raw(coap.GET, "no/such/thing/here")),
    ("a critical unknown option", _raw(coap.GET, "alarm", options=[(9, b"x")])),
    ("a critical unknown option, NON", _raw(coap.GET, "alarm", mtype=coap.NON, options=[(9, b"x")])),
    ("Proxy-Uri", _raw(coap.GET, "alarm", options=[(coap.PROXY_URI, b"coap://x")])),
    ("If-None-Match", _raw(coap.GET, "alarm", options=[(coap.IF_NONE_MATCH, b"")])),
    ("If-Match", _raw(coap.PUT, "alarm", options=[(coap.IF_MATCH, b"\x01")], payload=b"ON")),
    ("DELETE /alarm", _raw(coap.DELETE, "alarm")),
    ("POST /health", _raw(coap.POST, "health")),
    ("PUT /alarm, empty", _raw(coap.PUT, "alarm")),
    ("PUT /alarm, garbage", _raw(coap.PUT, "alarm", payload=b"x")),
    ("PUT /alarm, bad format", _raw(coap.PUT, "alarm", options=[(coap.CONTENT_FORMAT, 41)], payload=b"x")),
    ("GET /alarm, bad Accept", _raw(coap.GET, "alarm", options=[(coap.ACCEPT, 41)])),
    ("PUT /alarm JSON", _raw(coap.PUT, "alarm", options=[(coap.CONTENT_FORMAT, 50)], payload=b"true")),
    ("PUT /alarm answered in CBOR", _raw(coap.PUT, "alarm", options=[(coap.ACCEPT, 60)], payload=b"ON")),
    ("PUT /alarm answered in JSON", _raw(coap.PUT, "alarm", options=[(coap.ACCEPT, 50)], payload=b"ON")),
    ("PUT /alarm, too large", _raw(coap.PUT, "alarm", payload=b"x" * 65)),
    ("Block1 PUT, first block", _raw(coap.PUT, "alarm", options=[(coap.BLOCK1, _b(0, 1, 0))], payload=b"x" * 16)),
    ("Block1 PUT, out of order", _raw(coap.PUT, "alarm", options=[(coap.BLOCK1, _b(3, 1, 0))], payload=b"x" * 16)),
    ("Block1 PUT, Size1 too large", _raw(coap.PUT, "alarm", options=[(coap.BLOCK1, _b(0, 1, 0)), (coap.SIZE1, 5000)],
                                         payload=b"x" * 16)),
    ("Block2 beyond the end", _raw(coap.GET, "health", options=[(coap.BLOCK2, _b(99, 0, 0))])),
    ("Block2 SZX 7", _raw(coap.GET, "health", options=[(coap.BLOCK2, 7)])),
    ("Block2 asks 1024", _raw(coap.GET, "health", options=[(coap.BLOCK2, _b(0, 0, 6))])),
    ("Block2 asks block 1 of 64", _raw(coap.GET, "health", options=[(coap.BLOCK2, _b(1, 0, 2))])),
    ("Block2 asks block 1 of 1024", _raw(coap.GET, ".well-known/core", options=[(coap.BLOCK2, _b(1, 0, 6))])),
    ("Block2 on /alarm", _raw(coap.GET, "alarm", options=[(coap.BLOCK2, _b(0, 0, 6)), (coap.ACCEPT, 50)])),
]


def _with_token(data, token):
    msg = coap.parse(data)
    msg.token = token
    return coap.encode(msg)


def _as_is(data):
    return data[1] == 0 or len(data) == 5  # an empty or malformed message: sent as it is


# Every shape with token lengths 0, 1 and 8; an empty or malformed one only as it is.
CASES = [(what, data, token) for what, data in SHAPES
         for token in ([b""] if _as_is(data) else [b"", b"\x01", b"12345678"])]


@pytest.mark.parametrize("what,data,token", CASES, ids=["%s-tkl%d" % (c[0], len(c[2])) for c in CASES])
def test_no_reply_is_more_than_3x_the_request(what, data, token):
    server, alarm, sock, clock, _ = full_server()
    if not _as_is(data):
        data = _with_token(data, token)
    server.datagram(data, PEER)
    clock.advance(60000)
    server.service()
    for out, _ in sock.sent:
        assert len(out) <= 3 * len(data), (what, len(data), len(out), coap.parse(out))
    code = data[1]
    if code == coap.GET and data[0] >> 4 & 3 == coap.CON:
        assert sock.sent, what     # bounded, not silenced (a spoofed GET still gets its first block)


# The protection layer's own errors (RFC 8613 8.2, and 4.01 for what the policy refuses) are
# answered to unverified sources too: the same bound.
OSCORE_SHAPES = [
    ("an empty OSCORE option", _raw(coap.POST, options=[(coap.OSCORE, b"")])),
    ("an empty OSCORE option, NON", _raw(coap.POST, mtype=coap.NON, options=[(coap.OSCORE, b"")])),
    ("a reserved flag", _raw(coap.POST, options=[(coap.OSCORE, b"\x80")])),
    ("an unknown kid", _raw(coap.POST, options=[(coap.OSCORE, b"\x09\x01\x77")], payload=b"12345678")),
    ("a ciphertext that does not verify", _raw(coap.POST, options=[(coap.OSCORE, b"\x09\x01\x01")],
                                               payload=b"12345678")),
    ("a 4-byte PUT", _raw(coap.PUT)),
    ("a 4-byte DELETE, NON", _raw(coap.DELETE, mtype=coap.NON)),
    ("PUT /alarm", _raw(coap.PUT, "alarm", payload=b"ON")),
]


@pytest.mark.skipif(not _has_cryptography(), reason="the `cryptography` package is missing: OSCORE's AES")
@pytest.mark.parametrize("what,data", OSCORE_SHAPES, ids=[s[0] for s in OSCORE_SHAPES])
def test_the_protection_layer_errors_are_bounded_too(tmp_path, what, data):
    server, alarm, sock, clock, layer = oscore_server(tmp_path)
    server.datagram(data, PEER)
    (out, _), = sock.sent
    r = coap.parse(out)
    assert r.code in (coap.BAD_REQUEST, coap.UNAUTHORIZED, coap.BAD_OPTION) and r.opt(coap.OSCORE) is None, r
    assert len(out) <= 3 * len(data), (what, len(data), len(out), r)
    assert not alarm.on


def test_a_duplicate_does_not_replay_a_bigger_answer():
    # A spoofer sends a big request, then 4-byte requests with its message ID from the same
    # address: the cached answer is for retransmissions (byte for byte the same request), and a
    # small look-alike must not make it a reflector.
    server, alarm, sock, clock, _ = full_server()
    big = _raw(coap.GET, "health", token=b"12345678", mid=77, options=[(coap.URI_QUERY, b"x" * 200)])
    server.datagram(big, PEER)
    (first, _), = sock.sent
    sock.sent = []
    assert len(first) <= 3 * len(big)
    small = bytes((0x40, coap.GET, 0, 77))
    for _ in range(5):
        server.datagram(small, PEER)
    assert all(len(out) <= 3 * len(small) for out, _ in sock.sent), sock.sent
    server.datagram(big, PEER)             # the real retransmission still gets the cached answer
    (again, _), = sock.sent[-1:]
    assert again == first


def test_errors_carry_no_diagnostic_that_amplifies():
    server, alarm, sock, clock, _ = full_server()
    for data in (_raw(coap.GET), _raw(coap.GET, "nothing/here", mid=8), _raw(coap.PUT, "alarm", mid=9, payload=b"x")):
        server.datagram(data, PEER)
        (r, _), = sock.take()
        assert r.code >> 5 == 4 and len(coap.encode(r)) <= 3 * len(data)
    server.datagram(_raw(coap.GET, mid=10), PEER)    # the smallest request: a bare 4.04
    (r, _), = sock.take()
    assert (r.code, r.payload) == (coap.NOT_FOUND, b"")
    server.datagram(_raw(coap.PUT, "alarm", mid=11), PEER)   # its 28-byte diagnostic would not fit
    (r, _), = sock.take()
    assert (r.code, r.payload) == (coap.BAD_REQUEST, b"")


def test_a_protected_request_is_exempt():
    # The OSCORE layer sets observe.key while it has a request answered: that source is verified.
    server, alarm, sock, clock, _ = full_server()
    server.observe.key = b"ctx"
    try:
        server.datagram(_raw(coap.GET, "health"), PEER)
        server.datagram(_raw(coap.PUT, "alarm", mid=8, payload=b"x"), PEER)
    finally:
        server.observe.key = None
    (whole, _), (bad, _) = sock.take()
    assert whole.code == coap.CONTENT and whole.opt(coap.BLOCK2) is None and json.loads(whole.payload)["version"]
    assert bad.code == coap.BAD_REQUEST and bad.payload


@pytest.mark.parametrize("path,opts", [("health", []), ("health", [(coap.ACCEPT, 60)]), (".well-known/core", []),
                                       ("alarm", [(coap.ACCEPT, 50)]), ("alarm", [(coap.ACCEPT, 60)])])
@pytest.mark.parametrize("token", [b"", b"12345678"], ids=["tkl0", "tkl8"])
def test_a_client_reads_the_whole_body_block_by_block(path, opts, token):
    server, alarm, sock, clock, _ = full_server()
    r = ask_whole(server, sock, _raw(coap.GET, path, token=token, options=opts))
    assert r.code == coap.CONTENT and (r.blocks > 1 or path == "alarm")   # /alarm may fit whole
    server.observe.key = b"ctx"          # protected: the body in one piece
    try:
        whole = ask_whole(server, sock, _raw(coap.GET, path, token=token, mid=999, options=opts))
    finally:
        server.observe.key = None
    assert whole.blocks == 1 and whole.opt(coap.BLOCK2) is None
    if path == "health":   # the body changes (heap, requests): compare its keys
        load = cbor2.loads if opts else json.loads
        assert load(r.payload).keys() == load(whole.payload).keys()
    else:
        assert r.payload == whole.payload


def test_a_block_asked_for_in_a_bigger_size_comes_at_the_same_offset():
    server, alarm, sock, clock, _ = full_server()
    whole = ask_whole(server, sock, _raw(coap.GET, "health", mid=500))
    assert len(whole.payload) > 64 + 16
    data = _raw(coap.GET, "health", mid=501, options=[(coap.BLOCK2, _b(1, 0, 2))])  # 64-byte block 1
    server.datagram(data, PEER)
    (r, _), = sock.take()
    num, more, szx = coap.block_decode(r.opt(coap.BLOCK2))
    assert szx < 2 and num << szx == 1 << 2 and len(coap.encode(r)) <= 3 * len(data)
    assert r.payload == whole.payload[64:64 + (16 << szx)]   # the body block 0 was cut from


def test_health_blocks_are_one_snapshot():
    # The later blocks come from the body block 0 was cut from, though the counters move on:
    # the client puts together one valid body. A new block 0 takes a new snapshot.
    server, alarm, sock, clock, health = full_server()
    data = _raw(coap.GET, "health")
    server.datagram(data, PEER)
    (first, _), = sock.take()
    assert first.opt(coap.BLOCK2) is not None
    clock.advance(5000)
    alarm.set(True, "pin")

    def send(d):
        server.datagram(d, PEER)
        (r, _), = sock.take()
        return r
    r = fetch_rest(send, data, first)
    assert r.blocks > 1 and json.loads(r.payload)["uptime"] == 0
    r = ask_whole(server, sock, _raw(coap.GET, "health", mid=600))
    assert json.loads(r.payload)["uptime"] >= 5


def test_multicast_discovery_answers_are_small():
    server, alarm, sock, clock, _ = full_server()
    for data in (_raw(coap.GET, ".well-known/core", mtype=coap.NON),
                 _raw(coap.GET, ".well-known/core", mtype=coap.NON, mid=8, options=[(coap.URI_QUERY, b"rt=alarm")]),
                 _raw(coap.GET, ".well-known/core", mtype=coap.NON, mid=9, options=[(coap.URI_QUERY, b"ct=*")])):
        server.datagram(data, ("127.0.0.1", 40100), mcast=True)
        clock.advance(10000)
        server.service()
        (out, _), = sock.sent
        sock.sent = []
        assert coap.parse(out).code == coap.CONTENT and len(out) <= 3 * len(data)


def test_the_observe_registration_answer_is_bounded_and_registers():
    server, alarm, sock, clock, _ = full_server()
    data = _raw(coap.GET, "health", options=[(coap.OBSERVE, 0)])
    server.datagram(data, PEER)
    (first, _), = sock.sent
    sock.sent = []
    assert len(first) <= 3 * len(data) and coap.parse(first).opt(coap.BLOCK2) is not None
    r = ask_whole(server, sock, _raw(coap.GET, "health", mid=8, options=[(coap.OBSERVE, 0)]))
    assert r.opt(coap.OBSERVE) is not None and len(server.observers) == 1 and r.blocks > 1
    assert json.loads(r.payload)["version"]


def test_the_firmware_under_the_vm_is_no_reflector(firmware):
    fw = firmware()
    c = fw.client()
    for data in (_raw(coap.GET, mid=1), _raw(coap.GET, "health", mid=2), _raw(coap.GET, ".well-known/core", mid=3),
                 _raw(coap.GET, "health", mid=4, options=[(coap.OBSERVE, 0)]), _raw(coap.PUT, "alarm", mid=5)):
        c.send(data)
        c.sock.settimeout(2)
        out, _ = c.sock.recvfrom(2048)
        assert len(out) <= 3 * len(data), (data, out)
    r = c.whole(coap.GET, "health")
    assert r.blocks > 1 and json.loads(r.payload)["version"]
    c.close()
