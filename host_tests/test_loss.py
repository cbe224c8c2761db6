# Packet loss in the shim: a seeded schedule drops at least 30% of datagrams in each direction.
# Clients here retransmit as RFC 7252 4.2 says; time is the FakeClock's, so nothing sleeps.
import random

from host import coapmsg as coap
from harness import make_server, request

LOSS = 0.35
ACK_TIMEOUT = 2000
MAX_RETRANSMIT = 4
ADDR = ("10.0.0.1", 5683)


def lossy(server, sock, seed):
    """Drop LOSS of the server's sends; return deliver(data, addr) that drops LOSS of the client's."""
    rnd = random.Random(seed)
    sock.drop = lambda data, addr: rnd.random() < LOSS
    return lambda data, addr: rnd.random() < LOSS or server.datagram(data, addr)


def test_retransmitted_con_put_is_applied_exactly_once():
    server, alarm, sock, clock = make_server()
    deliver = lossy(server, sock, seed=7)
    calls = []
    res = server.routes[b"alarm"]
    handle = res.handle
    res.handle = lambda req, fmt: calls.append(req.code) or handle(req, fmt)
    put_on = request(coap.PUT, payload=b"ON", mid=100, token=b"\x01")
    acked = False
    timeout = ACK_TIMEOUT
    for attempt in range(MAX_RETRANSMIT + 1):
        deliver(put_on, ADDR)
        acks = [m for m, a in sock.take() if m.mtype == coap.ACK and m.mid == 100]
        if acks:
            assert acks[0].code == coap.CHANGED
            acked = True
            break
        clock.advance(timeout)
        timeout *= 2
    assert acked, "seeded schedule never let the PUT through"
    sock.drop = None
    server.datagram(request(coap.PUT, payload=b"OFF", mid=101, token=b"\x02"), ADDR)
    assert not alarm.on
    # A late copy of the first PUT (still within EXCHANGE_LIFETIME) gets the cached reply only.
    clock.advance(30000)
    server.datagram(put_on, ADDR)
    (reply, _), = sock.take()[-1:]
    assert reply.mid == 100 and reply.code == coap.CHANGED
    assert not alarm.on, "a duplicate PUT was applied again"
    assert calls.count(coap.PUT) == 2  # ON once, OFF once: never a repeat


class _Observer:
    """A client observing /alarm over a lossy link: ACKs CON notifications, re-registers when
    Max-Age runs out with no notification (RFC 7641 3.3.1), keeps the freshest state."""

    def __init__(self, k):
        self.addr = ("10.0.1.%d" % k, 5683)
        self.token = bytes((k, 0x0B))
        self.mid = 1000 * k
        self.state = None
        self.seq = -1
        self.heard = None  # clock time of the last notification

    def register(self, deliver, now):
        self.mid += 1
        self.heard = now
        deliver(request(coap.GET, mid=self.mid, token=self.token, options=[(coap.OBSERVE, 0)]), self.addr)

    def receive(self, msg, deliver, now):
        if msg.token != self.token or msg.code != coap.CONTENT:
            return
        if msg.mtype == coap.CON:
            deliver(coap.encode(coap.Message(coap.ACK, coap.EMPTY, msg.mid)), self.addr)
        seq = msg.opt_uint(coap.OBSERVE)
        if seq is None:
            return
        # Observe numbers are 24-bit and wrap: newer if ahead by less than 2^23 (RFC 7641 3.4).
        if self.seq < 0 or (seq - self.seq) % (1 << 24) < (1 << 23):
            self.seq = seq
            self.state = msg.payload
            self.heard = now


def test_every_observer_ends_with_the_final_state():
    server, alarm, sock, clock = make_server()
    deliver = lossy(server, sock, seed=11)
    obs = [_Observer(k) for k in range(1, 7)]

    def pump(ms):
        # Run the server and the network for `ms` of fake time, in 100 ms steps.
        for _ in range(ms // 100):
            server.service()
            for msg, addr in sock.take():
                for o in obs:
                    if o.addr == addr:
                        o.receive(msg, deliver, clock.now)
            for o in obs:
                if clock.now - o.heard > (server.observe.max_age + 5) * 1000:
                    o.register(deliver, clock.now)
            clock.advance(100)

    for o in obs:
        o.register(deliver, clock.now)
    pump(20000)
    for i in range(25):
        alarm.set(i % 2 == 0, "test")
        pump(300)
    final = b"ON" if alarm.on else b"OFF"
    pump(600000)  # ten minutes: keep-alive CONs and re-registrations settle everything
    assert [o.state for o in obs] == [final] * len(obs)
    assert len(server.observers) <= server.observers.capacity


def test_vanished_observer_is_removed_after_the_rfc_retransmissions():
    server, alarm, sock, clock = make_server(notify_con_every=1)
    server.datagram(request(coap.GET, mid=5, token=b"\x77", options=[(coap.OBSERVE, 0)]), ADDR)
    assert len(server.observers) == 1
    sock.take()
    sock.drop = lambda data, addr: True  # the client is gone: nothing reaches it, nothing comes back
    sent = []
    sock.drop = lambda data, addr: sent.append(coap.parse(data)) or True
    alarm.set(True, "test")
    start = clock.now
    for _ in range(2000):  # 200 s of fake time, far past the last retransmission
        server.service()
        if not len(server.observers):
            break
        clock.advance(100)
    assert len(server.observers) == 0
    cons = [m for m in sent if m.mtype == coap.CON]
    assert len(cons) == 1 + MAX_RETRANSMIT and len({m.mid for m in cons}) == 1
    # Removed only after the whole back-off: at least ACK_TIMEOUT * (2^5 - 1) (RFC 7252 4.8.2).
    assert clock.now - start >= ACK_TIMEOUT * (2 ** (MAX_RETRANSMIT + 1) - 1)
    assert len(server.outbox) == 0
