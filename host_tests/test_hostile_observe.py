# Attacks on Observe from a host on the same LAN (the hostile-LAN issue, findings 1 and 5),
# played over the shim with the fake clock: an attacker holding observer slots must not lock the
# owner out, and forged registrations must not turn the board into a reflector.
import pytest

from host import coapmsg as coap
from harness import loopback, make_server, request

OWNER = ("10.0.9.1", 40000)
ONE_ENDPOINT = ("10.0.66.1", 5000)                             # 8 tokens from one endpoint
ONE_ADDRESS = [("10.0.66.2", 6000 + k) for k in range(8)]      # 8 endpoints of one address
SPOOFED = [("10.0.77.%d" % k, 5683) for k in range(1, 9)]      # 8 addresses that never answer


def _ack(mid):
    return coap.encode(coap.Message(coap.ACK, coap.EMPTY, mid))


class Lan:
    """The server over the shim, and the hosts around it: `ackers` answer every CON with an ACK
    (real hosts, the owner and an attacker alike); any other address never answers (a spoofed
    one). Counts the bytes each address receives."""

    def __init__(self, **cfg):
        self.server, self.alarm, self.sock, self.clock = make_server(**cfg)
        self.ackers = set()
        self.got = {}          # addr -> bytes received
        self.sent = 0          # bytes the attacker sent
        self.mid = 100

    def pump(self):
        """Deliver what the server sent; the ackers ACK. Returns [(Message, addr)]."""
        out = []
        while self.sock.sent:
            batch, self.sock.sent = self.sock.sent, []
            for data, addr in batch:
                self.got[addr] = self.got.get(addr, 0) + len(data)
                m = coap.parse(data)
                out.append((m, addr))
                if addr in self.ackers and m.mtype == coap.CON:
                    self.server.datagram(_ack(m.mid), addr)
        return out

    def register(self, addr, token=b"ob", key=None):
        """A GET with Observe: 0 from addr; key: as if it came through OSCORE (the protection
        layer sets observe.key while the request is answered). Returns the response."""
        self.mid += 1
        data = request(coap.GET, mid=self.mid, token=token, options=[(coap.OBSERVE, 0)])
        if addr not in self.ackers:
            self.sent += len(data)
        self.server.observe.key = key
        try:
            self.server.datagram(data, addr)
        finally:
            self.server.observe.key = None
        (r, _), = [(m, a) for m, a in self.pump() if a == addr]
        return r

    def change(self):
        """The alarm flips; returns [(addr, payload)] of the notifications that went out at once."""
        self.alarm.set(not self.alarm.on, "put")
        self.server.service()
        return [(a, m.payload) for m, a in self.pump() if m.code == coap.CONTENT]

    def state(self):
        return b"ON" if self.alarm.on else b"OFF"

    def run(self, ms, step=100):
        for _ in range(ms // step):
            self.clock.advance(step)
            self.server.service()
            self.pump()


def _attack(lan, kind):
    if kind in ("one endpoint", "all three"):
        lan.ackers.add(ONE_ENDPOINT)
        for k in range(8):
            lan.register(ONE_ENDPOINT, token=b"t%d" % k)
    if kind in ("one address", "all three"):
        lan.ackers.update(ONE_ADDRESS)
        for k, addr in enumerate(ONE_ADDRESS):
            lan.register(addr, token=b"p%d" % k)
    lan.change()  # the ACKing attackers ACK their first notification: they are verified
    if kind in ("spoofed", "all three"):
        for addr in SPOOFED:
            lan.register(addr)


@pytest.mark.parametrize("kind", ["one endpoint", "one address", "spoofed", "all three"])
def test_the_owner_gets_observe_past_an_attacker_holding_slots(kind):
    lan = Lan()
    _attack(lan, kind)
    lan.ackers.add(OWNER)
    r = lan.register(OWNER)
    assert r.code == coap.CONTENT and r.opt(coap.OBSERVE) is not None
    heard = lan.change()
    assert (OWNER, lan.state()) in heard
    # The attack goes on: more tokens, more ports, more forged registrations. Having ACKed its
    # first notification, the owner is verified, and no newcomer displaces it.
    for k in range(8):
        lan.register(ONE_ENDPOINT, token=b"u%d" % k)
        lan.register(("10.0.66.2", 7000 + k), token=b"v%d" % k)
        lan.register(("10.0.78.%d" % k, 5683))
    heard = lan.change()
    assert (OWNER, lan.state()) in heard
    # And the caps held throughout.
    assert len([a for a, _ in heard if a == ONE_ENDPOINT]) <= 2
    assert len([a for a, _ in heard if a[0] == "10.0.66.2"]) <= 4


def test_an_acking_attacker_cannot_hold_more_than_the_caps():
    lan = Lan()
    lan.ackers.add(ONE_ENDPOINT)
    lan.ackers.update(ONE_ADDRESS)
    for rnd in range(3):  # again and again, ACKing every notification
        for k in range(8):
            lan.register(ONE_ENDPOINT, token=b"%d-%d" % (rnd, k))
            lan.register(ONE_ADDRESS[k], token=b"%d-%d" % (rnd, k))
        heard = lan.change()
        assert len([a for a, _ in heard if a == ONE_ENDPOINT]) == 2        # observers_per_endpoint
        assert len([a for a, _ in heard if a[0] == "10.0.66.2"]) == 4       # observers_per_address
    assert len(lan.server.observers) == 2 + 4
    # A full table of verified observers: a newcomer from a third host gets a plain 2.05.
    for k in range(2):
        lan.ackers.add(("10.0.66.3", k))
        lan.register(("10.0.66.3", k))
    lan.change()
    r = lan.register(("10.0.66.4", 1))
    assert r.code == coap.CONTENT and r.opt(coap.OBSERVE) is None


def test_the_caps_are_configurable():
    lan = Lan(observers_per_endpoint=1, observers_per_address=3)
    for k in range(4):
        lan.register(ONE_ENDPOINT, token=b"%d" % k)
        lan.register(ONE_ADDRESS[k], token=b"%d" % k)
    heard = lan.change()
    assert len([a for a, _ in heard if a == ONE_ENDPOINT]) == 1
    assert len([a for a, _ in heard if a[0] == "10.0.66.2"]) == 3


def test_a_renewal_keeps_its_slot_and_a_newcomer_displaces_the_oldest_unverified():
    lan = Lan(max_observers=3)
    for addr in SPOOFED[:3]:
        lan.register(addr)
        lan.clock.advance(100)
    assert lan.register(SPOOFED[0]).opt(coap.OBSERVE) is not None  # a renewal: same slot, still oldest
    assert lan.register(SPOOFED[3]).opt(coap.OBSERVE) is not None  # displaces SPOOFED[0]
    assert sorted(a for a, _ in lan.change()) == SPOOFED[1:4]


def test_an_authenticated_observer_is_never_displaced():
    lan = Lan()
    r = lan.register(OWNER, key=b"ctx")   # through OSCORE; it does not even ACK (not verified)
    assert r.opt(coap.OBSERVE) is not None
    for k in range(16):
        lan.register(("10.0.77.%d" % (k + 1), 5683))
        lan.register(("10.0.9.1", 41000 + k))          # the owner's own address, other ports
    lan.register(OWNER, token=b"x")                  # its own endpoint, another token
    # A plain request with its endpoint and token neither takes it over nor ends it.
    assert lan.register(OWNER).opt(coap.OBSERVE) is None
    lan.server.datagram(request(coap.GET, mid=900, token=b"ob", options=[(coap.OBSERVE, 1)]), OWNER)
    lan.pump()
    assert OWNER in [a for a, _ in lan.change()]


def test_an_authenticated_newcomer_displaces_an_unauthenticated_observer():
    lan = Lan(max_observers=2)
    for k in range(2):                               # a table full of verified observers
        lan.ackers.add(("10.0.66.%d" % k, 5683))
        lan.register(("10.0.66.%d" % k, 5683))
    lan.change()
    assert lan.register(("10.0.66.9", 5683)).opt(coap.OBSERVE) is None           # plain: no room
    assert lan.register(OWNER, key=b"ctx").opt(coap.OBSERVE) is not None         # OSCORE: room
    assert lan.register(("10.0.9.2", 5683), key=b"ctx").opt(coap.OBSERVE) is not None
    assert lan.register(("10.0.9.3", 5683), key=b"ctx").opt(coap.OBSERVE) is None  # none to displace
    assert sorted(a for a, _ in lan.change()) == [OWNER, ("10.0.9.2", 5683)]


def test_an_unverified_observer_gets_one_con_at_a_time_then_is_dropped():
    # RFC 7641 4.5.1: without a round-trip estimate, at most one NON per 3 s on average. An
    # observer that never proved its address gets no NON at all: one CON at a time, backing off.
    lan = Lan()
    victim = SPOOFED[0]
    lan.register(victim)
    times = []
    for t in range(0, 120000, 100):
        if t % 1000 == 0:
            lan.alarm.set(not lan.alarm.on, "put")       # a change every second
        lan.clock.advance(100)
        lan.server.service()
        for m, a in lan.pump():
            assert a == victim and m.mtype == coap.CON
            times.append(t)
    assert len(times) == 5                              # the CON and its 4 retransmissions
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(b >= 2 * a - 200 for a, b in zip(gaps, gaps[1:])) and gaps[0] >= 2000
    assert len(lan.server.observers) == 0               # then it is gone


@pytest.mark.parametrize("again_every_s", [None, 10])
def test_forged_registrations_reflect_a_bounded_few_hundred_bytes(again_every_s):
    """8 forged registrations for a victim that never answers (again: the attacker repeats them
    every 10 s); the alarm changes every 2 s for 3 minutes. The victim gets a few hundred bytes,
    a verified observer hears every change."""
    lan = Lan()
    lan.ackers.add(OWNER)
    lan.register(OWNER)
    lan.change()                                      # the owner ACKs: verified
    victim = [("10.0.99.9", 5683 + k) for k in range(8)]

    def forge():
        for k, addr in enumerate(victim):
            lan.register(addr, token=b"f%d" % k)

    forge()
    missed = 0
    for t in range(100, 180001, 100):
        lan.clock.advance(100)
        if again_every_s and t % (again_every_s * 1000) == 0:
            forge()
        if t % 2000 == 0:
            heard = lan.change()
            missed += (OWNER, lan.state()) not in heard
        else:
            lan.server.service()
            lan.pump()
    reflected = sum(n for a, n in lan.got.items() if a[0] == "10.0.99.9")
    print("victim got %d bytes in 3 min, for %d bytes of forged registrations" % (reflected, lan.sent))
    assert missed == 0
    if again_every_s is None:
        assert reflected <= 600          # measured: 8 responses + 4 observers x 5 CONs
    else:
        assert reflected <= 4096 and reflected <= 2 * lan.sent


def test_the_caps_hold_for_the_unix_ports_raw_addresses(firmware):
    # Under the MicroPython unix port an address is a raw struct sockaddr, not a tuple: one
    # endpoint, one address and another address are told apart all the same.
    fw = firmware()
    a = fw.client()
    for k in range(3):
        a.request(coap.GET, token=b"a%d" % k, options=[(coap.OBSERVE, 0)])
    assert fw.stats()["observers"][0] == 2                # observers_per_endpoint
    for k in range(3):
        fw.client().request(coap.GET, token=b"b%d" % k, options=[(coap.OBSERVE, 0)])
    assert fw.stats()["observers"][0] == 4                # observers_per_address, for 127.0.0.1
    r = fw.client(loopback(2)).request(coap.GET, token=b"c", options=[(coap.OBSERVE, 0)])
    assert r.opt(coap.OBSERVE) is not None
    assert fw.stats()["observers"][0] == 5                # another address: a slot of its own
