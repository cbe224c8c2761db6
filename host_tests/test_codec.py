# The codec alone: bytes in, Message out, and back (RFC 7252 section 3).
import pytest

from host import coapmsg as coap
from host.coapmsg import CoapError, Message, parse, encode


def test_round_trip_with_extended_option_numbers_and_lengths():
    msg = Message(coap.CON, coap.GET, 0xBEEF, b"\x01\x02\x03", [], b"payload")
    msg.add(coap.URI_PATH, b"alarm")
    msg.add(coap.OBSERVE, b"")
    msg.add(coap.URI_QUERY, b"x" * 20)          # length 13..268: one extra byte
    msg.add(coap.SIZE1, b"\x04\x00")            # delta 13..268
    msg.add(2048, b"y" * 300)                   # delta and length over 268: two extra bytes
    data = encode(msg)
    assert parse(data) == msg


def test_header_fields_on_the_wire():
    data = encode(Message(coap.NON, coap.CONTENT, 0x1234, b"\xAA", [(coap.CONTENT_FORMAT, b"")], b"ON"))
    assert data == bytes([0x51, 0x45, 0x12, 0x34, 0xAA, 0xC0, 0xFF]) + b"ON"


def test_encode_sorts_options():
    msg = Message(coap.CON, coap.GET, 1, b"", [(coap.URI_PATH, b"a"), (coap.URI_HOST, b"h")])
    assert [n for n, _ in parse(encode(msg)).options] == [coap.URI_HOST, coap.URI_PATH]


@pytest.mark.parametrize("data, reason, rejectable", [
    (b"\x40\x01", "shorter than a header", False),
    (b"\x80\x01\x00\x01", "unknown version", False),
    (b"\x49\x01\x00\x01" + b"\x00" * 9, "token length over 8", True),
    (b"\x44\x01\x00\x01\x01", "truncated token", True),
    (b"\x40\x01\x00\x01\xb5ab", "truncated option value", True),
    (b"\x40\x01\x00\x01\xd0", "truncated option", True),
    (b"\x40\x01\x00\x01\xf0", "reserved option delta 15", True),
    (b"\x40\x01\x00\x01\x1f", "reserved option length 15", True),
    (b"\x40\x01\x00\x01\xff", "payload marker with no payload", True),
    (b"\x40\x00\x00\x01\xff\x01", "empty message with content", True),
])
def test_malformed(data, reason, rejectable):
    with pytest.raises(CoapError) as e:
        parse(data)
    assert e.value.reason == reason
    assert (e.value.mid == 1) == rejectable


def test_uint_and_block_helpers():
    assert coap.uint_encode(0) == b""
    assert coap.uint_encode(0x10203) == b"\x01\x02\x03"
    assert coap.uint_decode(b"\x01\x02\x03") == 0x10203
    assert coap.block_decode(coap.uint_encode(coap.block_encode(5, True, 2))) == (5, 1, 2)


def test_writer_reuses_one_buffer():
    w = coap.Writer(64)
    w.header(coap.ACK, coap.CONTENT, 7, b"t").option_uint(coap.OBSERVE, 0x123456).payload(b"OFF")
    first = bytes(w.view())
    assert parse(first).opt_uint(coap.OBSERVE) == 0x123456
    w.header(coap.ACK, coap.CHANGED, 8, b"")
    assert parse(bytes(w.view())).code == coap.CHANGED and w.buf is w.view().obj


def test_writer_grows_for_a_message_bigger_than_its_buffer():
    w = coap.Writer(16)
    w.header(coap.ACK, coap.CONTENT, 9, b"tok").option(coap.LOCATION_PATH, b"x" * 40)
    w.option_uint(coap.CONTENT_FORMAT, 40).payload(b"y" * 300)
    m = parse(bytes(w.view()))
    assert (m.token, m.opt(coap.LOCATION_PATH), m.payload) == (b"tok", b"x" * 40, b"y" * 300)
    assert w.buf is w.view().obj
