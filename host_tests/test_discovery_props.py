# Hostile input to the new parsers: only the documented errors, and state that stays bounded.
import cbor2
from hypothesis import given, settings, strategies as st

from firmware import cbor, cbor_read
from host import coapmsg as coap
from harness import request
from harness import PEER, full_server

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**31, 2**31), st.text(max_size=40))


@given(st.lists(st.tuples(st.text(max_size=12), scalars), max_size=8, unique_by=lambda kv: kv[0]))
def test_cbor_writer_agrees_with_cbor2(pairs):
    raw = cbor.dumps_map(pairs)
    assert cbor2.loads(raw) == dict(pairs)
    assert cbor_read.loads(raw) == dict(pairs)


@given(st.binary(max_size=64))
def test_cbor_reader_raises_only_valueerror(data):
    try:
        cbor_read.loads(data)
    except ValueError:
        pass


@settings(max_examples=60)
@given(st.lists(st.binary(max_size=20), max_size=4))
def test_link_filters_never_fail(queries):
    server, _, sock, _, _ = full_server()
    server.datagram(request(coap.GET, ".well-known/core", options=[(coap.URI_QUERY, q) for q in queries]), PEER)
    (r, _), = sock.take()
    assert r.code == coap.CONTENT


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 40), st.booleans(), st.integers(0, 7), st.binary(max_size=80),
                          st.integers(0, 3)), max_size=12))
def test_block1_state_stays_bounded(blocks):
    server, _, sock, _, _ = full_server(max_payload=100)
    for mid, (num, more, szx, data, who) in enumerate(blocks):
        opts = [(coap.BLOCK1, coap.block_encode(num, more, szx))]
        server.datagram(request(coap.PUT, "alarm", mid=mid, payload=data, options=opts), ("127.0.0.1", 41000 + who))
        (r, _), = sock.take()
        assert r.code in (coap.CONTINUE, coap.CHANGED, coap.BAD_REQUEST, coap.BAD_OPTION,
                          coap.REQUEST_ENTITY_INCOMPLETE, coap.REQUEST_ENTITY_TOO_LARGE)
        b = server.block1
        assert b is None or b.buf is None or len(b.buf) <= 100
