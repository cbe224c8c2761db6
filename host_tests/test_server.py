# The layers over the UDP shim (endpoint, site, observe): what a peer sees on the wire for each request.
import pytest

from host import coapmsg as coap
from harness import assert_alarm_link, make_server, request

A = ("10.0.0.1", 40000)
B = ("10.0.0.2", 40001)


@pytest.fixture
def srv():
    return make_server()


def ask(srv, data, addr=A):
    server, alarm, sock, clock = srv
    server.datagram(data, addr)
    if server.pending:
        server.service()
    return sock.take()


def one(srv, data, addr=A):
    out = ask(srv, data, addr)
    assert len(out) == 1, out
    msg, to = out[0]
    assert to == addr
    return msg


def test_get_returns_state_as_text_plain(srv):
    r = one(srv, request(coap.GET, mid=10, token=b"tk"))
    assert (r.mtype, r.code, r.mid, r.token) == (coap.ACK, coap.CONTENT, 10, b"tk")
    assert r.opt_uint(coap.CONTENT_FORMAT) == coap.TEXT_PLAIN
    assert r.payload == b"OFF"


@pytest.mark.parametrize("body, state", [(b"ON", b"ON"), (b" on\n", b"ON"), (b"oFf", b"OFF"), (b"\tOn ", b"ON")])
def test_put_sets_state_ignoring_case_and_space(srv, body, state):
    if state == b"OFF":
        srv[1].set(True, "test")
    r = one(srv, request(coap.PUT, payload=body))
    assert r.code == coap.CHANGED and r.payload == state
    assert r.opt_uint(coap.CONTENT_FORMAT) == coap.TEXT_PLAIN
    assert one(srv, request(coap.GET, mid=2)).payload == state


@pytest.mark.parametrize("body", [b"", b"maybe", b"ONN", b"1"])
def test_put_bad_payload_is_400_and_state_untouched(srv, body):
    srv[0].observe.key = b"ctx"   # a protected (verified) request: the diagnostic always comes
    try:
        full = one(srv, request(coap.PUT, mid=2, payload=body))
    finally:
        srv[0].observe.key = None
    assert full.code == coap.BAD_REQUEST and full.payload  # a short diagnostic
    data = request(coap.PUT, payload=body)
    r = one(srv, data)
    assert r.code == coap.BAD_REQUEST
    assert r.opt(coap.CONTENT_FORMAT) is None
    # To an unverified source, the diagnostic comes if it fits 3x the request (RFC 7252 11.3).
    fits = len(coap.encode(full)) <= 3 * len(data)
    assert r.payload == (full.payload if fits else b"") and len(coap.encode(r)) <= 3 * len(data)
    assert srv[1].on is False and srv[1].changes == 0


def test_put_with_other_content_format_is_415(srv):
    r = one(srv, request(coap.PUT, payload=b"ON", options=[(coap.CONTENT_FORMAT, 41)]))
    assert r.code == coap.UNSUPPORTED_CONTENT_FORMAT
    assert srv[1].on is False


def test_put_with_explicit_text_plain_is_accepted(srv):
    r = one(srv, request(coap.PUT, payload=b"ON", options=[(coap.CONTENT_FORMAT, 0)]))
    assert r.code == coap.CHANGED


@pytest.mark.parametrize("method", [coap.POST, coap.DELETE, coap.FETCH, 0x07])
def test_other_methods_are_405(srv, method):
    assert one(srv, request(method, payload=b"ON")).code == coap.METHOD_NOT_ALLOWED
    assert srv[1].on is False


def test_unknown_path_is_404(srv):
    assert one(srv, request(coap.GET, path="nope")).code == coap.NOT_FOUND
    assert one(srv, request(coap.GET, path="", mid=2)).code == coap.NOT_FOUND
    assert one(srv, request(coap.GET, path="alarm/x", mid=3)).code == coap.NOT_FOUND


def test_a_slash_inside_one_uri_path_option_is_part_of_that_segment(srv):
    # One Uri-Path option ".well-known/core" is the URI /.well-known%2Fcore (RFC 7252 6.5):
    # not discovery, and no such resource.
    one_option = request(coap.GET, path="", mid=4, options=[(coap.URI_PATH, b".well-known/core")])
    assert one(srv, one_option).code == coap.NOT_FOUND
    two_options = request(coap.GET, path=".well-known/core", mid=5)
    assert one(srv, two_options).code == coap.CONTENT
    assert one(srv, request(coap.GET, path="", mid=6, options=[(coap.URI_PATH, b"ala"), (coap.URI_PATH, b"rm")])).code \
        == coap.NOT_FOUND


def test_unknown_critical_option_is_402_in_con_and_rst_in_non(srv):
    r = one(srv, request(coap.GET, options=[(9, b"x")]))
    assert r.code == coap.BAD_OPTION
    r = one(srv, request(coap.GET, mtype=coap.NON, mid=2, options=[(2049, b"x")]))
    assert (r.mtype, r.mid, r.code) == (coap.RST, 2, coap.EMPTY)


def test_unknown_elective_option_is_ignored(srv):
    assert one(srv, request(coap.GET, options=[(2048, b"x")])).code == coap.CONTENT


def test_options_real_clients_send_cause_no_error(srv):
    opts = [(coap.URI_HOST, b"alarm.local"), (coap.URI_PORT, 5683), (coap.ACCEPT, 0),
            (coap.BLOCK2, coap.block_encode(0, False, 6)), (coap.SIZE2, 0), (coap.ETAG, b"\x01\x02"),
            (coap.URI_QUERY, b"x=1")]
    r = one(srv, request(coap.GET, options=opts))
    assert r.code == coap.CONTENT and r.payload == b"OFF"
    r = one(srv, request(coap.PUT, mid=2, payload=b"ON", options=opts[:3] + opts[5:]))
    assert r.code == coap.CHANGED


def test_accept_other_than_text_plain_is_406(srv):
    assert one(srv, request(coap.GET, options=[(coap.ACCEPT, 41)])).code == coap.NOT_ACCEPTABLE


def test_proxy_uri_is_505(srv):
    r = one(srv, request(coap.GET, options=[(coap.PROXY_URI, b"coap://x/alarm")]))
    assert r.code == coap.PROXYING_NOT_SUPPORTED


def test_conditional_requests(srv):
    assert one(srv, request(coap.PUT, payload=b"ON", options=[(coap.IF_NONE_MATCH, b"")])).code \
        == coap.PRECONDITION_FAILED
    assert one(srv, request(coap.PUT, mid=2, payload=b"ON", options=[(coap.IF_MATCH, b"\x01")])).code \
        == coap.PRECONDITION_FAILED
    assert srv[1].on is False
    assert one(srv, request(coap.PUT, mid=3, payload=b"ON", options=[(coap.IF_MATCH, b"")])).code \
        == coap.CHANGED


def test_too_large_payload_is_413_with_size1(srv):
    r = one(srv, request(coap.PUT, payload=b"O" * 65))
    assert r.code == coap.REQUEST_ENTITY_TOO_LARGE
    assert r.opt_uint(coap.SIZE1) == 64


# -- message layer ------------------------------------------------------------------------

def test_con_gets_piggybacked_ack_non_gets_non(srv):
    r = one(srv, request(coap.GET, mtype=coap.CON, mid=77, token=b"a"))
    assert (r.mtype, r.mid, r.token) == (coap.ACK, 77, b"a")
    r = one(srv, request(coap.GET, mtype=coap.NON, mid=78, token=b"b"))
    assert r.mtype == coap.NON and r.token == b"b" and r.code == coap.CONTENT


def test_non_responses_use_fresh_message_ids(srv):
    mids = {one(srv, request(coap.GET, mtype=coap.NON, mid=100 + i)).mid for i in range(5)}
    assert len(mids) == 5


def test_duplicate_con_put_gets_same_response_and_is_applied_once(srv):
    server, alarm = srv[0], srv[1]
    first = ask(srv, request(coap.PUT, mid=5, token=b"p1", payload=b"ON"))
    assert one(srv, request(coap.PUT, mid=6, token=b"p2", payload=b"OFF")).payload == b"OFF"
    again = ask(srv, request(coap.PUT, mid=5, token=b"p1", payload=b"ON"))  # late retransmission
    assert again == first
    assert alarm.on is False and alarm.changes == 2
    assert server.duplicates == 1


def test_same_mid_from_another_endpoint_is_not_a_duplicate(srv):
    one(srv, request(coap.PUT, mid=5, payload=b"ON"), A)
    r = one(srv, request(coap.PUT, mid=5, payload=b"OFF"), B)
    assert r.payload == b"OFF" and srv[1].on is False


def test_duplicate_non_request_is_ignored(srv):
    one(srv, request(coap.PUT, mtype=coap.NON, mid=9, payload=b"ON"))
    assert ask(srv, request(coap.PUT, mtype=coap.NON, mid=9, payload=b"ON")) == []
    assert srv[1].changes == 1


def test_dedup_cache_is_bounded(srv):
    server = srv[0]
    for mid in range(200):
        ask(srv, request(coap.GET, mid=mid))
    assert len(server.dedup) == server.dedup.capacity == 16


def test_duplicates_expire_after_exchange_lifetime(srv):
    server, alarm, sock, clock = srv
    one(srv, request(coap.PUT, mid=5, payload=b"ON"))
    alarm.set(False, "test")
    clock.advance(248000)
    assert one(srv, request(coap.PUT, mid=5, payload=b"ON")).payload == b"ON"
    assert alarm.changes == 3


def test_empty_con_ping_gets_rst(srv):
    r = one(srv, bytes([0x40, 0x00, 0x12, 0x34]))
    assert (r.mtype, r.code, r.mid, r.token) == (coap.RST, coap.EMPTY, 0x1234, b"")


@pytest.mark.parametrize("data, rst", [
    (b"\x80\x01\x00\x01", False),                       # version 2: silently ignored
    (b"\x49\x01\x00\x01" + b"\x00" * 9, True),          # token length 9, CON: reject
    (b"\x59\x01\x00\x01" + b"\x00" * 9, False),         # same, NON: ignore
    (b"\x40\x01\x00\x01\xb5ab", True),                  # truncated option
    (b"\x40\x01\x00\x01\xf0", True),                    # option nibble 15
    (b"\x40\x01\x00\x01\x1f", True),
    (b"\x40\x01\x00\x01\xff", True),                    # payload marker, nothing after
    (b"\x40\x01", False),                               # shorter than a header
    (b"", False),
    (b"\x40\x45\x00\x01", True),                        # a CON response nobody asked for
    (b"\x50\x00\x00\x01", False),                       # empty NON
    (b"\x60\x01\x00\x01\xb5alarm", False),              # a request in an ACK
])
def test_malformed_datagrams_are_ignored_or_reset(srv, data, rst):
    out = ask(srv, data)
    if rst:
        assert [(m.mtype, m.mid) for m, _ in out] == [(coap.RST, 1)]
    else:
        assert out == []
    assert one(srv, request(coap.GET, mid=99)).code == coap.CONTENT  # still serving


def test_handler_exception_is_500_and_server_keeps_going(srv):
    server, alarm = srv[0], srv[1]

    def boom(on, source):
        raise RuntimeError("siren on fire")
    alarm.listeners.insert(0, boom)
    r = one(srv, request(coap.PUT, payload=b"ON"))
    assert r.code == coap.INTERNAL_SERVER_ERROR
    alarm.listeners.remove(boom)
    assert one(srv, request(coap.GET, mid=2)).code == coap.CONTENT


# -- discovery ----------------------------------------------------------------------------

def test_well_known_core_lists_alarm(srv):
    r = one(srv, request(coap.GET, path=".well-known/core"))
    assert r.code == coap.CONTENT
    assert r.opt_uint(coap.CONTENT_FORMAT) == coap.LINK_FORMAT
    assert r.payload.startswith(b"</alarm>")
    assert_alarm_link(r.payload)


def test_block2_early_negotiation_slices_discovery(srv):
    body = one(srv, request(coap.GET, path=".well-known/core")).payload
    got = b""
    num = 0
    while True:
        r = one(srv, request(coap.GET, path=".well-known/core", mid=10 + num,
                              options=[(coap.BLOCK2, coap.block_encode(num, False, 0))]))
        n, more, szx = coap.block_decode(r.opt(coap.BLOCK2))
        assert (n, szx) == (num, 0) and len(r.payload) <= 16
        got += r.payload
        if not more:
            break
        num += 1
    assert got == body
