# Observe (RFC 7641): who observes what, notifications and keep-alives. The observer table
# lives here behind verbs (register, forget, changed); no other module touches its arrays.
# Notifications go out through the endpoint; a CON one is an outbox entry owned by this
# layer (acked / failed / fresh). Who may hold a slot, and what an observer that never
# proved its address gets: register() and service(), docs/design.md.
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
# An observer's flags: a notification is owed; its standing: it ACKed a CON notification of
# ours (our MIDs cannot be guessed, so its address is real), it registered through OSCORE.
_DIRTY = const(1)
_VERIFIED = const(2)
_AUTH = const(4)


class Observe:
    key = None    # the OSCORE binding of the request being answered (protect.py), else None

    def __init__(self, endpoint, capacity, con_every, timeout, limits):
        self.endpoint = endpoint
        self.capacity = capacity
        # Most slots one endpoint, one host may hold: per endpoint | per host << 8 (an int, not a
        # tuple: at 63k a few bytes decide whether the simulator boots).
        self.limits = limits
        self.con_every = con_every            # at least every con_every-th notification is CON
        # A notification is sent at least every `timeout` ms (whole seconds: the keep-alive), so
        # observers' copies stay fresh; they keep them 30 s longer. (service() derives the
        # keep-alive from max_age: one attribute less keeps the instance's table small.)
        self.max_age = timeout // 1000 + 30
        self.seq = endpoint.rand(16)          # the Observe sequence number (RFC 7641 4.4)
        self.addrs = [None] * capacity        # None marks a free slot
        self.tokens = [b""] * capacity
        self.resources = [None] * capacity
        self.formats = array("H", bytes(2 * capacity))   # Content-Format registered with
        self.flags = bytearray(capacity)      # _DIRTY: changed since the last notification; _VERIFIED, _AUTH
        self.nons = array("H", bytes(2 * capacity))      # NON notifications since the last CON
        self.last_con = array("i", bytes(4 * capacity))  # ticks of the last CON (or registration)
        self.last_mid = array("i", b"\xff" * (4 * capacity))  # MID of the last NON (-1: none)
        # and when it went; an unverified observer gets no NON: for it, when it registered
        self.times = array("i", bytes(4 * capacity))
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
        Observe value for the registration's response, or -1 when it gets no slot (answer
        without Observe, RFC 7641 4.1).

        An endpoint holds at most limits & 0xFF slots, a host limits >> 8. Past a limit, or
        when the table is full, the newcomer takes the slot of an entry it may displace: an
        unverified one (an authenticated newcomer: any unauthenticated one), of its own
        endpoint, else of its own host, else of anyone; the least valuable, the oldest first. Past a limit, only
        its own endpoint's (host's) entries may go, and not one whose CON is in flight. An
        authenticated entry is never displaced."""
        token = req.token
        now = self.endpoint.clock()
        v = self.flags
        mark = 0 if self.key is None else _AUTH
        i = self.find(addr, token)
        if i >= 0:
            if v[i] & _AUTH > mark:
                return -1        # a plain request cannot take over an authenticated observation
            if v[i] & _VERIFIED:
                self.endpoint.forget(self, i)
            # else its CON, if one is in flight, goes on: a renewal restarts no exchange
            v[i] = (v[i] | mark) & ~_DIRTY
        else:
            n = m = 0            # slots held by this endpoint, by this host
            k = best = -1        # the entry to displace, and its rank
            for j in range(self.capacity):
                a = self.addrs[j]
                if a is None:
                    if i < 0:
                        i = j
                    continue
                # 2: the same endpoint; 1: the same host (a (host, port) tuple, or the unix
                # port's struct sockaddr, whose bytes 2-3 are the port); 0: another host.
                c = 2 if a == addr else 1 if a[0] == addr[0] and a[4:] == addr[4:] else 0
                n += c >> 1
                m += (c + 1) >> 1
                f = v[j] >> 1    # its standing: 1 verified, 2 authenticated, 3 both
                r = c * 2 + 1 - f    # its rank: the nearest first, then the unverified
                # An unverified entry of the newcomer's own host whose CON is in flight stays: a
                # forger could otherwise restart its exchange at will, a stream of first CONs.
                if f < (mark >> 1 or 1) and not (c and self.endpoint.outbox.find(self, j) >= 0) and (
                        r > best or r == best and ticks_diff(self.times[j], self.times[k]) < 0):
                    k = j
                    best = r
            c = 2 if n >= self.limits & 0xFF else 1 if m >= self.limits >> 8 else 0 if i < 0 else -1
            if c >= 0:
                if best >> 1 < c:
                    return -1    # (the client sees it: no Observe option; no log line: RAM)
                i = k
                self._drop(i, "displaced by a newcomer")
            log.info("observer %s on /%s (%d/%d)", addr_str(addr), resource.path.decode(),
                     len(self) + 1, self.capacity)
            v[i] = mark
            self.times[i] = now
        self.addrs[i] = addr
        self.tokens[i] = token
        self.resources[i] = resource
        self.formats[i] = fmt
        self.nons[i] = 0
        self.last_con[i] = now
        self.last_mid[i] = -1
        self.seq = (self.seq + 1) & 0xFFFFFF
        return self.seq

    def forget(self, addr, token):
        """Deregistration (RFC 7641 3.6), or a failed re-registration (4.1). A plain request
        does not end an authenticated observation."""
        i = self.find(addr, token)
        if i >= 0 and (self.key is not None or not self.flags[i] & _AUTH):
            self._drop(i, "deregistered")

    def _drop(self, i, reason):
        log.info("observer %s removed: %s", addr_str(self.addrs[i]), reason)
        self.endpoint.forget(self, i)
        self.addrs[i] = None
        self.tokens[i] = b""
        self.resources[i] = None

    def changed(self, resource):
        """The resource's state changed: its observers are owed a notification (service())."""
        for i in range(self.capacity):
            if self.resources[i] is resource:
                self.flags[i] |= _DIRTY
                self.endpoint.pending = True

    # -- the outbox owner's interface ------------------------------------------------------

    def acked(self, i):
        self.flags[i] |= _VERIFIED   # our MIDs cannot be guessed: the address is real
        if self.flags[i] & _DIRTY:
            self.endpoint.pending = True  # the state moved on while the CON was in flight

    # No ACK after every retransmission, or an RST: the client is gone or has forgotten.
    failed = _drop

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
        if not self.flags[i] & _DIRTY:
            return None
        self.flags[i] &= ~_DIRTY
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
        """Send owed notifications and keep-alives. Returns ms until it wants a call.

        An observer that has not proved its address (it never ACKed a CON of ours) may be a
        spoofed one: it gets CON notifications only, one in flight, backing off (RFC 7252 4.2),
        and is dropped when one goes unanswered. So a forged registration reflects at most one
        exchange (RFC 7641 4.5.1 asks at most one NON per 3 s without a round-trip estimate)."""
        ep = self.endpoint
        wait = 60000
        keepalive = (self.max_age - 30) * 1000
        for i in range(self.capacity):
            addr = self.addrs[i]
            if addr is None:
                continue
            since = ticks_diff(now, self.last_con[i])
            if self.flags[i] & _DIRTY or since >= keepalive:
                if ep.outbox.find(self, i) >= 0:
                    continue  # a CON is in flight; it carries the latest state when it goes again
                self.flags[i] &= ~_DIRTY
                if since >= keepalive or self.nons[i] + 1 >= self.con_every or not self.flags[i] & _VERIFIED:
                    data = bytes(self.render(i, _CON, ep.next_mid()))
                    if ep.confirm(addr, data, self, i, now):
                        self.nons[i] = 0
                        self.last_con[i] = now
                    else:
                        self.flags[i] |= _DIRTY    # every outbox slot busy: try again shortly
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
