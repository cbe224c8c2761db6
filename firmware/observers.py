# The observer table (RFC 7641): who observes what, keyed by endpoint and token. Fixed capacity.
from array import array


class ObserverTable:
    """Who observes what (RFC 7641), keyed by endpoint and token. Fixed capacity."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.addrs = [None] * capacity    # None marks a free slot
        self.tokens = [b""] * capacity
        self.resources = [None] * capacity
        self.formats = array("H", bytes(2 * capacity))  # Content-Format registered with
        self.dirty = [False] * capacity   # state changed since the last notification
        self.nons = array("H", bytes(2 * capacity))     # NON notifications since the last CON
        self.last_con = array("i", bytes(4 * capacity))  # ticks of the last CON (or registration)
        self.last_mid = array("i", b"\xff" * (4 * capacity))  # MID of the last notification (-1: none)

    def find(self, addr, token):
        for i in range(self.capacity):
            if self.addrs[i] == addr and self.tokens[i] == token:
                return i
        return -1

    def add(self, addr, token, resource, fmt, now):
        """Register, or replace the entry with the same endpoint and token. -1 when full."""
        i = self.find(addr, token)
        if i < 0:
            for j in range(self.capacity):
                if self.addrs[j] is None:
                    i = j
                    break
            if i < 0:
                return -1
        self.addrs[i] = addr
        self.tokens[i] = token
        self.resources[i] = resource
        self.formats[i] = fmt
        self.dirty[i] = False
        self.nons[i] = 0
        self.last_con[i] = now
        self.last_mid[i] = -1
        return i

    def remove(self, i):
        self.addrs[i] = None
        self.tokens[i] = b""
        self.resources[i] = None

    def find_mid(self, addr, mid):
        for i in range(self.capacity):
            if self.last_mid[i] == mid and self.addrs[i] == addr:
                return i
        return -1

    def mark(self, resource):
        """The resource changed: every observer of it is owed a notification."""
        n = 0
        for i in range(self.capacity):
            if self.resources[i] is resource:
                self.dirty[i] = True
                n += 1
        return n

    def __len__(self):
        return self.capacity - self.addrs.count(None)  # None marks a free slot
