# The message layer's tables (RFC 7252 4): duplicate detection and CON retransmission
# (endpoint.py uses them; docs/design.md).
# Fixed-size tables only: memory is set at start-up and never grows (numbers in arrays: 2 or 4
# bytes an entry, not a list's 4 or 8).
from array import array

from firmware.compat import const, ticks_add, ticks_diff

# Transmission parameters, RFC 7252 4.8 (private consts: folded in, no RAM).
_ACK_TIMEOUT_MS = const(2000)
_ACK_RANDOM_MS = const(1000)          # ACK_TIMEOUT * (ACK_RANDOM_FACTOR - 1)
_MAX_RETRANSMIT = const(4)
_EXCHANGE_LIFETIME_MS = const(247000)


class DedupCache:
    """Recently received requests (endpoint, MID) and the reply sent to each.

    A ring: when full, the oldest entry is dropped. A linear scan of a few
    slots allocates nothing, unlike a dict keyed by tuples. Small replies are
    copied into one preallocated arena (a ring too), so caching a reply
    allocates nothing; a reply the arena cannot hold is kept as its own bytes.
    """

    def __init__(self, capacity, arena=None):
        self.capacity = capacity
        self.addrs = [None] * capacity
        self.mids = array("H", bytes(2 * capacity))
        self.times = array("i", bytes(4 * capacity))   # ticks: < 2**30
        self.replies = [None] * capacity  # None, True (in the arena) or bytes
        self.offs = array("H", bytes(2 * capacity))
        self.lens = array("H", bytes(2 * capacity))
        self.arena = bytearray(arena if arena is not None else 24 * capacity)  # a GET's ACK: ~12 B
        self.amv = memoryview(self.arena)
        self.apos = 0
        self.head = 0

    def find(self, addr, mid, now):
        mids = self.mids
        addrs = self.addrs
        for i in range(self.capacity):
            if mids[i] == mid and addrs[i] == addr:
                if ticks_diff(now, self.times[i]) < _EXCHANGE_LIFETIME_MS:
                    return i
                addrs[i] = None  # expired
                self.replies[i] = None
                return -1
        return -1

    def reply(self, i):
        """The reply cached for entry i (bytes or a view of the arena), or None."""
        r = self.replies[i]
        if r is True:
            o = self.offs[i]
            return self.amv[o:o + self.lens[i]]
        return r

    def add(self, addr, mid, now, reply):
        i = self.head
        self.head = (i + 1) % self.capacity
        addrs = self.addrs
        for j in range(self.capacity):
            # One address object per endpoint: keeping each datagram's own would pin small
            # objects all over a small heap and leave no hole big enough for the next receive.
            if addrs[j] == addr:
                addr = addrs[j]
                break
        addrs[i] = addr
        self.mids[i] = mid
        self.times[i] = now
        self.replies[i] = None
        if reply is not None:
            n = len(reply)
            size = len(self.arena)
            if n * 4 > size:
                self.replies[i] = bytes(reply)
            else:
                o = self.apos
                if o + n > size:
                    o = 0
                # Whatever the new bytes overwrite is no longer cached.
                for j in range(self.capacity):
                    if self.replies[j] is True and self.offs[j] < o + n and o < self.offs[j] + self.lens[j]:
                        self.replies[j] = None
                self.arena[o:o + n] = reply
                self.offs[i] = o
                self.lens[i] = n
                self.replies[i] = True
                self.apos = o + n
        return i

    def clear(self):
        """Forget every entry: the way to give memory back when the heap is exhausted."""
        for i in range(self.capacity):
            self.addrs[i] = None
            self.replies[i] = None

    def __len__(self):
        return self.capacity - self.addrs.count(None)  # None marks a free slot


class Outbox:
    """Confirmable messages this endpoint sent and awaits an ACK for.

    Each entry has an owner and a tag (say, the observation layer and an observer's slot).
    Owners share one small interface: acked(tag), failed(tag, reason), fresh(tag) -> newer data
    to send instead, or None. Retransmissions back off exponentially (RFC 7252 4.2).
    """

    def __init__(self, capacity, rand):
        self.capacity = capacity
        self.rand = rand              # rand(bits) -> int, for the initial timeout
        self.addrs = [None] * capacity
        self.mids = array("H", bytes(2 * capacity))
        self.data = [None] * capacity
        self.owners = [None] * capacity
        self.tags = array("H", bytes(2 * capacity))
        self.deadlines = array("i", bytes(4 * capacity))
        self.timeouts = array("i", bytes(4 * capacity))
        self.retries = array("H", bytes(2 * capacity))

    def add(self, addr, mid, data, owner, tag, now):
        for i in range(self.capacity):
            if self.addrs[i] is None:
                timeout = _ACK_TIMEOUT_MS + self.rand(10) % (_ACK_RANDOM_MS + 1)
                self.addrs[i] = addr
                self.mids[i] = mid
                self.data[i] = data
                self.owners[i] = owner
                self.tags[i] = tag
                self.timeouts[i] = timeout
                self.deadlines[i] = ticks_add(now, timeout)
                self.retries[i] = 0
                return i
        return -1

    def find(self, owner, tag):
        """The entry of owner's message with this tag, or -1."""
        for i in range(self.capacity):
            if self.owners[i] is owner and self.tags[i] == tag:
                return i
        return -1

    def match(self, addr, mid):
        """The entry an ACK or RST for (addr, mid) answers, or -1."""
        for i in range(self.capacity):
            if self.mids[i] == mid and self.addrs[i] == addr:
                return i
        return -1

    def replace(self, i, mid, data):
        # A newer message takes over an entry; counter and timeout carry on (RFC 7641 4.5.2).
        self.mids[i] = mid
        self.data[i] = data

    def pop(self, addr, mid):
        """Free the entry for (addr, mid), if any (a piggybacked response answered it)."""
        i = self.match(addr, mid)
        if i >= 0:
            self.free(i)

    def free(self, i):
        self.addrs[i] = None
        self.data[i] = None
        self.owners[i] = None

    def due(self, i, now):
        return self.addrs[i] is not None and ticks_diff(self.deadlines[i], now) <= 0

    def backoff(self, i, now):
        """Count a retransmission of entry i. False when the retries are used up."""
        if self.retries[i] >= _MAX_RETRANSMIT:
            return False
        self.retries[i] += 1
        self.timeouts[i] *= 2
        self.deadlines[i] = ticks_add(now, self.timeouts[i])
        return True

    def next_deadline(self, now, wait):
        """Milliseconds until the earliest retransmission, at most `wait`."""
        best = wait
        for i in range(self.capacity):
            if self.addrs[i] is not None:
                d = ticks_diff(self.deadlines[i], now)
                if d < best:
                    best = d if d > 0 else 0
        return best

    def __len__(self):
        return self.capacity - self.addrs.count(None)  # None marks a free slot
