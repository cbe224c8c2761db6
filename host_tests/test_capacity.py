# Many endpoints observing at once: the table never grows past its capacity, the extra clients
# get plain responses, and a freed slot goes to the next client. (Observers here ACK their first
# notification, a CON: so they have proved their address, and no newcomer may displace them;
# test_hostile_observe.py has the newcomers that do.)
from host import coapmsg as coap
from harness import make_server, request


def _observe(server, sock, k, value=0, mid=None):
    server.datagram(request(coap.GET, mid=mid or 100 + k, token=bytes((k,)), options=[(coap.OBSERVE, value)]),
                    ("10.0.2.%d" % k, 5683))
    (msg, _), = sock.take()
    return msg


def _verify(server, alarm, sock):
    """A change: every observer's first notification is a CON, and each ACKs it."""
    alarm.set(not alarm.on, "test")
    server.service()
    for m, a in sock.take():
        assert m.mtype == coap.CON
        server.datagram(coap.encode(coap.Message(coap.ACK, coap.EMPTY, m.mid)), a)


def test_table_never_exceeds_capacity_and_extras_get_plain_responses():
    server, alarm, sock, clock = make_server(max_observers=8)
    replies = [_observe(server, sock, k) for k in range(1, 9)]
    _verify(server, alarm, sock)
    replies += [_observe(server, sock, k) for k in range(9, 21)]
    assert len(server.observers) == 8
    for k, msg in enumerate(replies, 1):
        assert msg.code == coap.CONTENT and msg.payload == (b"OFF" if k <= 8 else b"ON")
        assert (msg.opt(coap.OBSERVE) is not None) == (k <= 8), k
    # A change notifies the eight, and only them.
    alarm.set(False, "test")
    server.service()
    notified = {a for m, a in sock.take()}
    assert notified == {("10.0.2.%d" % k, 5683) for k in range(1, 9)}


def test_freed_slot_is_reused():
    server, alarm, sock, clock = make_server(max_observers=8)
    for k in range(1, 9):
        _observe(server, sock, k)
    _verify(server, alarm, sock)
    assert _observe(server, sock, 9).opt(coap.OBSERVE) is None  # full
    # Client 3 deregisters (GET with Observe: 1, RFC 7641 3.6).
    assert _observe(server, sock, 3, value=1, mid=500).opt(coap.OBSERVE) is None
    assert len(server.observers) == 7
    assert _observe(server, sock, 9, mid=501).opt(coap.OBSERVE) is not None
    assert len(server.observers) == 8
    # And an RST to a notification frees a slot too.
    alarm.set(False, "test")
    server.service()
    note = [(m, a) for m, a in sock.take() if a == ("10.0.2.5", 5683)][0][0]
    server.datagram(coap.encode(coap.Message(coap.RST, coap.EMPTY, note.mid)), ("10.0.2.5", 5683))
    assert len(server.observers) == 7
    assert _observe(server, sock, 10).opt(coap.OBSERVE) is not None
    assert len(server.observers) == 8


def test_request_filling_the_receive_buffer_gets_4_13():
    server, alarm, sock, clock = make_server(max_payload=64)
    big = request(coap.PUT, payload=b"ON" + b" " * 400, mid=9, token=b"\x33")
    server.datagram(big[:server.rx_size], ("10.0.3.1", 5683))  # what recvfrom(rx_size) hands over
    (msg, _), = sock.take()
    assert (msg.mtype, msg.code, msg.mid, msg.token) == (coap.ACK, coap.REQUEST_ENTITY_TOO_LARGE, 9, b"\x33")
    assert msg.opt_uint(coap.SIZE1) == 64
    assert not alarm.on


def test_dedup_cache_never_returns_a_wrong_reply():
    # Entries are reused in a ring, replies short and long: an entry may lose its reply, never
    # get another's; a duplicate is found only for its own endpoint and MID.
    import random
    import types
    from firmware.messages import DedupCache
    rnd = random.Random(3)
    cache = DedupCache(8, size=16)
    stored = {}
    for k in range(2000):
        reply = bytes([0x60, 0x44 if rnd.random() < 0.2 else 0x45]) + bytes(
            rnd.randrange(256) for _ in range(rnd.randrange(0, 28)))
        addr = ("10.0.4.%d" % (k % 3), k)
        mid = rnd.randrange(4) * 256 + rnd.randrange(4)   # few MIDs: many look-alikes in the table
        msg = types.SimpleNamespace(mid=mid, mtype=coap.CON, code=coap.PUT if reply[1] == 0x44 else coap.GET)
        i = cache.add(addr, msg, 0, reply)
        stored[i] = (addr, mid, reply)
        for j, (a, m, want) in stored.items():
            got = cache.reply(j)
            assert got is None or bytes(got) == want
            if cache.addrs[j] == a:
                assert cache.find(a, m, 0) == j
        assert len(cache) <= cache.capacity