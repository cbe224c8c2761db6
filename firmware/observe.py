# Observe (RFC 7641): who observes what, notifications and keep-alives. The observer table
# lives here behind verbs (register, forget, changed); no other module touches its arrays.
# Notifications go out through the endpoint; a CON one is an outbox entry owned by this
# layer (acked / failed / fresh). docs/design.md.
from array import array

from firmware import log
from firmware.compat import const, ticks_diff, addr_str

_CON = const(0)
_NON = const(1)
_CONTENT = const(0x45)
_OBSERVE = const(6)
_CONTENT_FORMAT = const(12)
_MAX_AGE = const(14)
_NON_LIFETIME_MS = const(145000)


class Observe:
    key = None    # the request's OSCORE context, while the protection layer has it answered

    def __init__(self, endpoint, capacity, con_every, keepalive_ms):
        self.endpoint = endpoint
        self.capacity = capacity
        self.con_every = con_every            # at least every con_every-th notification is CON
        self.keepalive_ms = keepalive_ms
        # A notification is sent at least every keepalive_ms, so observers' copies stay fresh.
        self.max_age = keepalive_ms // 1000 + 30
        self.seq = endpoint.rand(16)          # the Observe sequence number (RFC 7641 4.4)
        self.addrs = [None] * capacity        # None marks a free slot
        self.tokens = [b""] * capacity
        self.resources = [None] * capacity
        self.formats = array("H", bytes(2 * capacity))   # Content-Format registered with
        self.dirty = bytearray(capacity)      # state changed since the last notification
        self.nons = array("H", bytes(2 * capacity))      # NON notifications since the last CON
        self.last_con = array("i", bytes(4 * capacity))  # ticks of the last CON (or registration)
        self.last_mid = array("i", b"\xff" * (4 * capacity))  # MID of the last NON (-1: none)
        self.times = array("i", bytes(4 * capacity))  # and when it went
        endpoint.timers.append(self)
        endpoint.cancel = self.reset

    def __len__(self):
        return self.capacity - self.addrs.count(None)

    def find(self, addr, token):
        for i in range(self.capacity):
            if self.addrs[i] == addr and self.tokens[i] == token:
                return i
        return -1

    def register(self, addr, req, resource, fmt):
        """Add (or renew: same endpoint and token) the observation req asks for. Returns the
        Observe value for the registration's response, or -1 when the table is full (answer
        without Observe)."""
        token = req.token
        now = self.endpoint.clock()
        i = self.find(addr, token)
        if i < 0:
            i = self.addrs.index(None) if None in self.addrs else -1
            if i < 0:
                log.info("observer table full; %s gets a plain response", addr_str(addr))
                return -1
            log.info("observer %s on /%s (%d/%d)", addr_str(addr), resource.path.decode(),
                     len(self) + 1, self.capacity)
        self.endpoint.forget(self, i)
        self.addrs[i] = addr
        self.tokens[i] = token
        self.resources[i] = resource
        self.formats[i] = fmt
        self.dirty[i] = 0
        self.nons[i] = 0
        self.last_con[i] = now
        self.last_mid[i] = -1
        self.seq = (self.seq + 1) & 0xFFFFFF
        return self.seq

    def forget(self, addr, token):
        """Deregistration (RFC 7641 3.6), or a failed re-registration (4.1)."""
        i = self.find(addr, token)
        if i >= 0:
            self._drop(i, "deregistered")

    def _drop(self, i, reason):
        log.info("observer %s removed: %s", addr_str(self.addrs[i]), reason)
        self.endpoint.forget(self, i)
        self.addrs[i] = None
        self.tokens[i] = b""
        self.resources[i] = None

    def changed(self, resource):
        """The resource's state changed: its observers are owed a notification (service())."""
        n = 0
        for i in range(self.capacity):
            if self.resources[i] is resource:
                self.dirty[i] = 1
                n = 1
        if n:
            self.endpoint.pending = True

    # -- the outbox owner's interface ------------------------------------------------------

    def acked(self, i):
        if self.dirty[i]:
            self.endpoint.pending = True  # the state moved on while the CON was in flight

    def failed(self, i, reason):
        # No ACK after every retransmission, or an RST: the client is gone or has forgotten.
        self._drop(i, reason)

    def reset(self, addr, mid, now):
        """An RST that answers no CON of ours: it may reject our last NON notification (RFC 7641
        3.6), within that message's lifetime only (RFC 7252 4.8.2: NON_LIFETIME, 145 s)."""
        for i in range(self.capacity):
            if self.last_mid[i] == mid and self.addrs[i] == addr:
                if ticks_diff(now, self.times[i]) < _NON_LIFETIME_MS:
                    self._drop(i, "reset by client")
                return

    def fresh(self, i):
        """Before a retransmission: the latest state instead, as a new message, if it moved on."""
        if not self.dirty[i]:
            return None
        self.dirty[i] = 0
        return bytes(self.render(i, _CON, self.endpoint.next_mid()))

    # -- sending ---------------------------------------------------------------------------

    def render(self, i, mtype, mid):
        fmt = self.formats[i]
        w = self.endpoint.writer
        w.header(mtype, _CONTENT, mid, self.tokens[i])
        self.seq = (self.seq + 1) & 0xFFFFFF
        w.option_uint(_OBSERVE, self.seq)
        w.option_uint(_CONTENT_FORMAT, fmt)
        w.option_uint(_MAX_AGE, self.max_age)
        w.payload(self.resources[i].render(fmt))
        return w.view()

    def service(self, now):
        """Send owed notifications and keep-alives. Returns ms until it wants a call."""
        ep = self.endpoint
        wait = 60000
        keepalive = self.keepalive_ms
        for i in range(self.capacity):
            addr = self.addrs[i]
            if addr is None:
                continue
            since = ticks_diff(now, self.last_con[i])
            if self.dirty[i] or since >= keepalive:
                if ep.outbox.find(self, i) >= 0:
                    continue  # a CON is in flight; it carries the latest state when it goes again
                self.dirty[i] = 0
                if since >= keepalive or self.nons[i] + 1 >= self.con_every:
                    data = bytes(self.render(i, _CON, ep.next_mid()))
                    if ep.confirm(addr, data, self, i, now):
                        self.nons[i] = 0
                        self.last_con[i] = now
                    else:
                        self.dirty[i] = 1    # every outbox slot busy: try again shortly
                        wait = 100
                else:
                    self.nons[i] += 1
                    mid = ep.next_mid()
                    self.last_mid[i] = mid
                    self.times[i] = now
                    ep.send(self.render(i, _NON, mid), addr)
            elif keepalive - since < wait:
                wait = keepalive - since
        return wait
