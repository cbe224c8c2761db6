# Block2 (early negotiation) and Block1 reassembly through the shim.
import json

from host import coapmsg as coap
from harness import request
from harness import PEER, ask_whole, full_server


def blocks(server, sock, path, szx, options=(), limit=64, mid=100):
    """Fetch path block by block like a client; returns (body, list of responses)."""
    body = b""
    seen = []
    for num in range(limit):
        opts = list(options) + [(coap.BLOCK2, coap.block_encode(num, False, szx))]
        server.datagram(request(coap.GET, path, mid=mid + num, options=opts), PEER)
        (r, _), = sock.take()
        assert r.code == coap.CONTENT
        seen.append(r)
        n, more, rszx = coap.block_decode(r.opt(coap.BLOCK2))
        assert (n, rszx) == (num, szx)
        body += r.payload
        if not more:
            return body, seen
    raise AssertionError("too many blocks")


def test_block2_early_negotiation():
    server, _, sock, _, _ = full_server()
    # The body read the way a client reads it (a 3x bound cuts it into blocks of its choosing).
    whole = ask_whole(server, sock, request(coap.GET, ".well-known/core", mid=1000))
    body, seen = blocks(server, sock, ".well-known/core", 0)
    assert body == whole.payload and len(seen) == (len(body) + 15) // 16
    assert all(len(r.payload) == 16 for r in seen[:-1])
    assert seen[0].opt_uint(coap.SIZE2) == len(body)
    body, _ = blocks(server, sock, "alarm", 0, options=[(coap.ACCEPT, 50)], mid=200)
    assert json.loads(body)["on"] is False


def test_block2_beyond_the_end():
    server, _, sock, _, _ = full_server()
    server.datagram(request(coap.GET, "alarm", options=[(coap.BLOCK2, coap.block_encode(9, False, 0))]), PEER)
    (r, _), = sock.take()
    assert r.code == coap.BAD_OPTION


def put_blocks(server, sock, body, szx, mid=10, addr=PEER, size1=None, cf=50):
    size = 16 << szx
    n = max(1, (len(body) + size - 1) // size)
    out = []
    for num in range(n):
        chunk = body[num * size:(num + 1) * size]
        opts = [(coap.CONTENT_FORMAT, cf), (coap.BLOCK1, coap.block_encode(num, num + 1 < n, szx))]
        if size1 is not None and num == 0:
            opts.append((coap.SIZE1, size1))
        server.datagram(request(coap.PUT, "alarm", mid=mid + num, payload=chunk, options=opts), addr)
        (r, _), = sock.take()
        out.append(r)
        if r.code != coap.CONTINUE:
            break
    return out


def test_block1_put_reassembles():
    server, alarm, sock, _, _ = full_server(max_payload=200)
    body = b'{"on": true' + b" " * 100 + b"}"
    out = put_blocks(server, sock, body, 1)
    assert [r.code for r in out] == [coap.CONTINUE] * 3 + [coap.CHANGED]
    assert [coap.block_decode(r.opt(coap.BLOCK1)) for r in out] == [(0, 1, 1), (1, 1, 1), (2, 1, 1), (3, 0, 1)]
    assert alarm.on is True


def test_block1_too_large_gets_413_with_size1():
    server, alarm, sock, _, _ = full_server(max_payload=64)
    out = put_blocks(server, sock, b"x" * 100, 0)
    assert out[-1].code == coap.REQUEST_ENTITY_TOO_LARGE and out[-1].opt_uint(coap.SIZE1) == 64
    assert len(out) == 5          # refused at the block that crosses the limit
    out = put_blocks(server, sock, b"x" * 100, 0, mid=50, size1=100)
    assert len(out) == 1 and out[0].code == coap.REQUEST_ENTITY_TOO_LARGE   # Size1 says so up front
    assert server.block1.buf is None
    # and a plain PUT over the limit
    server.datagram(request(coap.PUT, "alarm", mid=90, payload=b"x" * 65), PEER)
    (r, _), = sock.take()
    assert r.code == coap.REQUEST_ENTITY_TOO_LARGE and r.opt_uint(coap.SIZE1) == 64
    assert alarm.on is False


def test_block1_out_of_order_and_interleaved():
    server, alarm, sock, _, _ = full_server(max_payload=200)
    opts = [(coap.CONTENT_FORMAT, 0), (coap.BLOCK1, coap.block_encode(2, True, 0))]
    server.datagram(request(coap.PUT, "alarm", payload=b"x" * 16, options=opts), PEER)
    (r, _), = sock.take()
    assert r.code == coap.REQUEST_ENTITY_INCOMPLETE
    # A short non-final block is a bad request.
    opts = [(coap.CONTENT_FORMAT, 0), (coap.BLOCK1, coap.block_encode(0, True, 0))]
    server.datagram(request(coap.PUT, "alarm", mid=2, payload=b"x" * 3, options=opts), PEER)
    (r, _), = sock.take()
    assert r.code == coap.BAD_REQUEST
    # Another client starting over takes the (single) slot; the first one's next block is incomplete.
    body = b"on" + b" " * 30
    put_blocks(server, sock, body[:16] + b"x" * 16, 0, mid=20, cf=0)[:1]
    other = ("127.0.0.1", 40009)
    assert put_blocks(server, sock, body, 0, mid=30, addr=other, cf=0)[-1].code == coap.CHANGED
    assert alarm.on is True
