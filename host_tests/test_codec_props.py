# Property tests of the codec (hypothesis): round trip, and hostile bytes never escape as anything
# but CoapError. The firmware's in-place Reader is the same decoder, so it is covered too.
from hypothesis import given, settings, strategies as st

from host import coapmsg as coap

_options = st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=300)), max_size=12)


@st.composite
def messages(draw):
    code = draw(st.integers(0, 255))
    options = sorted(draw(_options), key=lambda o: o[0])
    payload = draw(st.binary(max_size=200))
    token = draw(st.binary(max_size=8))
    if code == coap.EMPTY:
        token, options, payload = b"", [], b""  # an Empty message carries nothing (RFC 7252 4.1)
    return coap.Message(draw(st.integers(0, 3)), code, draw(st.integers(0, 0xFFFF)), token, options, payload)


@settings(max_examples=400, deadline=None)
@given(messages())
def test_encode_then_parse_is_identity(msg):
    assert coap.parse(coap.encode(msg)) == msg


@settings(max_examples=400, deadline=None)
@given(messages())
def test_reader_sees_what_parse_sees(msg):
    r = coap.Reader().load(coap.encode(msg)) if len(msg.options) <= 32 else None
    if r is not None:
        assert (r.mtype, r.code, r.mid, r.token, r.payload) == (msg.mtype, msg.code, msg.mid, msg.token,
                                                                msg.payload)
        for num, val in msg.options:
            assert r.opt(num) == msg.opt(num)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_parse_or_raise_coap_error(data):
    try:
        msg = coap.parse(data)
    except coap.CoapError:
        return
    assert coap.parse(coap.encode(msg)) == msg  # what parses, re-encodes to the same message


@settings(max_examples=1500, deadline=None)
@given(messages(), st.data())
def test_mutated_messages_parse_or_raise_coap_error(msg, data):
    raw = bytearray(coap.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.integers(0, 2))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if what == 0 and raw:
            raw[i] = data.draw(st.integers(0, 255))
        elif what == 1:
            del raw[i:]
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        coap.parse(bytes(raw))
    except coap.CoapError:
        pass
