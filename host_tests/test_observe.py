# Observe (RFC 7641) over the shim: registration, notifications, upkeep, limits. Time is the FakeClock.
from host import coapmsg as coap
MAX_RETRANSMIT = 4  # RFC 7252 4.8
from harness import make_server, request

A = ("10.0.0.1", 40000)
B = ("10.0.0.2", 40001)


def register(server, sock, addr=A, token=b"ob", mid=1, accept=None):
    opts = [(coap.OBSERVE, 0)]
    server.datagram(request(coap.GET, mid=mid, token=token, options=opts), addr)
    (r, _), = sock.take()
    return r


def change(server, alarm, on, source="put"):
    alarm.set(on, source)
    server.service()


def ack(server, msg, addr=A):
    server.datagram(bytes([0x60, 0, msg.mid >> 8, msg.mid & 0xFF]), addr)


def verified(server, sock, alarm, addr=A, token=b"ob"):
    """Register, and ACK the first notification (a CON: it proves the address). The alarm ends ON."""
    r = register(server, sock, addr, token)
    change(server, alarm, True)
    (n, to), = sock.take()
    assert n.mtype == coap.CON and to == addr
    ack(server, n, addr)
    return r


def seq(msg):
    return msg.opt_uint(coap.OBSERVE)


def test_registration_response_carries_observe():
    server, alarm, sock, clock = make_server()
    r = register(server, sock)
    assert r.code == coap.CONTENT and r.payload == b"OFF"
    assert seq(r) is not None and 0 <= seq(r) < 1 << 24
    assert len(server.observers) == 1


def test_same_endpoint_and_token_replaces_the_entry():
    server, alarm, sock, clock = make_server()
    register(server, sock, mid=1)
    register(server, sock, mid=2)
    assert len(server.observers) == 1
    register(server, sock, mid=3, token=b"other")
    register(server, sock, B, mid=4)
    assert len(server.observers) == 3


def test_notifications_follow_put_and_pin_with_token_format_and_rising_sequence():
    server, alarm, sock, clock = make_server()
    first = register(server, sock, token=b"tok")
    # a PUT from another client
    server.datagram(request(coap.PUT, mid=50, token=b"p", payload=b"ON"), B)
    server.service()
    out = sock.take()
    assert [(m.code, to) for m, to in out] == [(coap.CHANGED, B), (coap.CONTENT, A)]
    n1 = out[1][0]
    assert n1.mtype == coap.CON   # the first one to a new observer: its ACK proves the address
    ack(server, n1)
    # the board's input pin
    change(server, alarm, False, "pin")
    (n2, to), = sock.take()
    for n, state in ((n1, b"ON"), (n2, b"OFF")):
        assert n.token == b"tok" and n.payload == state
        assert n.opt_uint(coap.CONTENT_FORMAT) == coap.TEXT_PLAIN
    assert seq(first) < seq(n1) < seq(n2)


def test_no_notification_without_a_change():
    server, alarm, sock, clock = make_server()
    register(server, sock)
    change(server, alarm, False)  # already OFF
    assert sock.take() == []


def test_changes_faster_than_notifications_are_coalesced_latest_wins():
    server, alarm, sock, clock = make_server()
    register(server, sock)
    for on in (True, False, True):
        alarm.set(on, "pin")
    server.service()
    (n, _), = sock.take()
    assert n.payload == b"ON"


def test_deregister_with_observe_1():
    server, alarm, sock, clock = make_server()
    register(server, sock)
    server.datagram(request(coap.GET, mid=2, token=b"ob", options=[(coap.OBSERVE, 1)]), A)
    (r, _), = sock.take()
    assert r.code == coap.CONTENT and r.opt(coap.OBSERVE) is None
    assert len(server.observers) == 0
    change(server, alarm, True)
    assert sock.take() == []


def test_rst_to_a_non_notification_deregisters():
    server, alarm, sock, clock = make_server()
    verified(server, sock, alarm)
    change(server, alarm, False)
    (n, _), = sock.take()
    assert n.mtype == coap.NON
    server.datagram(bytes([0x70, 0, n.mid >> 8, n.mid & 0xFF]), A)  # RST
    assert len(server.observers) == 0
    change(server, alarm, True)
    assert sock.take() == []


def test_rst_from_another_endpoint_does_not_deregister():
    server, alarm, sock, clock = make_server()
    register(server, sock)
    change(server, alarm, True)
    (n, _), = sock.take()
    server.datagram(bytes([0x70, 0, n.mid >> 8, n.mid & 0xFF]), B)
    assert len(server.observers) == 1


def test_every_fifth_notification_is_confirmable():
    # The first is confirmable too: an observer gets NONs only once it has ACKed a CON of ours.
    server, alarm, sock, clock = make_server()
    register(server, sock)
    types = []
    for i in range(11):
        change(server, alarm, i % 2 == 0)
        (n, _), = sock.take()
        types.append(n.mtype)
        if n.mtype == coap.CON:
            ack(server, n)
    assert types == [coap.CON] + ([coap.NON] * 4 + [coap.CON]) * 2


def test_keepalive_con_without_a_change():
    server, alarm, sock, clock = make_server(keepalive_s=120)
    register(server, sock)
    clock.advance(119000)
    server.service()
    assert sock.take() == []
    clock.advance(1000)
    server.service()
    (n, _), = sock.take()
    assert n.mtype == coap.CON and n.payload == b"OFF" and n.token == b"ob"
    server.datagram(bytes([0x60, 0, n.mid >> 8, n.mid & 0xFF]), A)
    assert len(server.observers) == 1
    clock.advance(60000)
    server.service()
    assert sock.take() == []  # the next one is due keepalive_s after this ACKed CON


def test_unanswered_con_is_retransmitted_with_backoff_then_observer_removed():
    server, alarm, sock, clock = make_server(keepalive_s=120)
    register(server, sock)
    clock.advance(120000)
    server.service()
    (n, _), = sock.take()
    assert n.mtype == coap.CON
    sends = [0]
    t = 0
    while len(server.observers) and t < 200000:  # 100 ms steps, as the app's timer; the RFC's ~93 s
        clock.advance(100)
        t += 100
        server.service()
        for m, _a in sock.take():
            assert m.mid == n.mid and m.mtype == coap.CON
            sends.append(t)
    assert len(sends) == 1 + MAX_RETRANSMIT
    gaps = [b - a for a, b in zip(sends, sends[1:])]
    assert 2000 <= gaps[0] <= 3100
    for a, b in zip(gaps, gaps[1:]):
        assert abs(b - 2 * a) <= 200  # exponential back-off
    assert len(server.observers) == 0
    assert len(server.outbox) == 0


def test_state_change_while_con_in_flight_sends_latest_state_in_the_retransmission():
    server, alarm, sock, clock = make_server(notify_con_every=1)
    register(server, sock)
    change(server, alarm, True)
    (n1, _), = sock.take()
    assert n1.mtype == coap.CON and n1.payload == b"ON"
    change(server, alarm, False)
    assert sock.take() == []  # one CON at a time
    clock.advance(3100)
    server.service()
    (n2, _), = sock.take()
    assert n2.mtype == coap.CON and n2.payload == b"OFF" and n2.mid != n1.mid
    assert seq(n2) > seq(n1)
    server.datagram(bytes([0x60, 0, n2.mid >> 8, n2.mid & 0xFF]), A)
    assert len(server.outbox) == 0 and len(server.observers) == 1


def test_ack_after_state_moved_on_sends_the_new_state():
    server, alarm, sock, clock = make_server(notify_con_every=1)
    register(server, sock)
    change(server, alarm, True)
    (n1, _), = sock.take()
    alarm.set(False, "put")
    server.service()
    assert sock.take() == []
    server.datagram(bytes([0x60, 0, n1.mid >> 8, n1.mid & 0xFF]), A)
    server.service()
    (n2, _), = sock.take()
    assert n2.payload == b"OFF"


def test_full_table_answers_plain_get_without_observe():
    # Full of observers that have proved their address: a newcomer cannot displace them.
    server, alarm, sock, clock = make_server(max_observers=2)
    register(server, sock, ("10.0.0.1", 1))
    register(server, sock, ("10.0.0.2", 2))
    change(server, alarm, True)
    for n, to in sock.take():
        ack(server, n, to)
    r = register(server, sock, ("10.0.0.3", 3))
    assert r.code == coap.CONTENT and r.payload == b"ON" and r.opt(coap.OBSERVE) is None
    assert len(server.observers) == 2
    change(server, alarm, False)
    assert sorted(to[1] for _, to in sock.take()) == [1, 2]


def test_observe_on_discovery_is_a_plain_get():
    server, alarm, sock, clock = make_server()
    server.datagram(request(coap.GET, path=".well-known/core", options=[(coap.OBSERVE, 0)]), A)
    (r, _), = sock.take()
    assert r.code == coap.CONTENT and r.opt(coap.OBSERVE) is None
    assert len(server.observers) == 0


def test_failed_registration_removes_existing_entry():
    server, alarm, sock, clock = make_server()
    register(server, sock)
    server.datagram(request(coap.GET, mid=9, token=b"ob", options=[(coap.OBSERVE, 0), (coap.ACCEPT, 41)]), A)
    (r, _), = sock.take()
    assert r.code == coap.NOT_ACCEPTABLE and r.opt(coap.OBSERVE) is None
    assert len(server.observers) == 0
