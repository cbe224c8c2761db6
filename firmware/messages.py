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
_CON = const(0)
_GET = const(0x01)


class DedupCache:
    """Recently received requests (endpoint, MID) and the reply sent to each.

    A ring of fixed slots: a linear search allocates nothing, unlike a dict keyed by tuples.
    The MIDs sit big-endian in one bytearray, so a lookup is one C-level find(). Each entry
    has its own slot in a preallocated arena for its reply (a GET's ACK is about 12 bytes),
    so caching a reply allocates nothing; a longer reply is kept as its own bytes.

    Entries for requests that changed state (a PUT or POST answered 2.xx) are passed
    over by the ring while they are fresh, so a flood of other requests cannot flush them
    and let a retransmitted PUT be applied twice; at most half the table is held that way.
    """

    def __init__(self, capacity, size=24):
        self.capacity = capacity
        self.addrs = [None] * capacity      # None marks a free slot
        self.mids = bytearray(2 * capacity)
        self.key = bytearray(2)             # the MID looked up, as mids holds it
        self.times = array("i", bytes(4 * capacity))   # ticks: < 2**30
        self.replies = [None] * capacity    # None, True (in its arena slot) or bytes
        self.lens = bytearray(capacity)     # the length of a reply in its slot
        self.sizes = array("H", bytes(2 * capacity))  # the request's length (a retransmission's)
        self.n = 0                          # the length of the datagram about to be added
        self.flags = bytearray(capacity)    # 1: a state change, passed over while fresh
        self.size = size                    # each entry's reply slot in the arena
        self.arena = bytearray(size * capacity)
        self.amv = memoryview(self.arena)
        self.head = 0
        self.last = 0                       # the entry added last

    def find(self, addr, mid, now):
        key = self.key
        key[0] = mid >> 8
        key[1] = mid & 0xFF
        j = self.mids.find(key)
        while j >= 0:
            if not j & 1 and self.addrs[j >> 1] == addr:
                j >>= 1
                if ticks_diff(now, self.times[j]) < _EXCHANGE_LIFETIME_MS:
                    return j
                self.addrs[j] = None  # expired
                self.replies[j] = None
                self.flags[j] = 0
                return -1
            j = self.mids.find(key, j + 1)
        return -1

    def reply(self, i, size=-1):
        """The reply cached for entry i (bytes or a view of the arena), or None. With size, the
        length of a duplicate: a retransmission is the same datagram again and gets the reply
        (a protected one may be over 3x its request); a shorter look-alike with the same MID
        gets it only within 3x its own size (RFC 7252 11.3), else None."""
        r = self.replies[i]
        if r is True:
            o = i * self.size
            r = self.amv[o:o + self.lens[i]]
        if r is not None and size >= 0 and self.sizes[i] != size and len(r) > 3 * size:
            return None
        return r

    def add(self, addr, msg, now, reply):
        cap = self.capacity
        addrs = self.addrs
        i = self.head
        skipped = 0
        while (self.flags[i] and addrs[i] is not None and skipped < cap >> 1
               and ticks_diff(now, self.times[i]) < _EXCHANGE_LIFETIME_MS):
            i = (i + 1) % cap
            skipped += 1
        self.head = (i + 1) % cap
        if addrs[self.last] == addr:
            addr = addrs[self.last]
        else:
            for j in range(cap):
                if addrs[j] == addr:
                    addr = addrs[j]
                    break
        self.last = i
        addrs[i] = addr
        self.mids[2 * i] = msg.mid >> 8
        self.mids[2 * i + 1] = msg.mid & 0xFF
        self.times[i] = now
        self.sizes[i] = self.n  # the datagram's length, set by the endpoint before it handled msg
        self.flags[i] = 1 if reply is not None and msg.code != _GET and reply[1] >> 5 == 2 else 0
        self.replies[i] = None
        if reply is not None and msg.mtype == _CON:
            n = len(reply)
            if n <= self.size:
                o = i * self.size
                self.arena[o:o + n] = reply
                self.lens[i] = n
                self.replies[i] = True
            else:
                self.replies[i] = bytes(reply)
        return i

    def clear(self):
        """Forget every entry: the way to give memory back when the heap is exhausted."""
        for i in range(self.capacity):
            self.addrs[i] = None
            self.replies[i] = None
            self.flags[i] = 0

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
