# The host-side half of the codec: a Message object, parse() and encode().
# Tests and tools use these; the firmware reads with coap.Reader and writes with coap.Writer.
# Reached as coap.Message, coap.parse, ... (coap.py loads this module on first use).
from firmware.coap import CON, EMPTY, CoapError, Reader, Writer, uint_decode  # noqa: F401

TYPE_NAMES = ("CON", "NON", "ACK", "RST")


def code_str(code):
    return "%d.%02d" % (code >> 5, code & 31)


class Message:
    """A decoded message. options: list of (number, bytes) in ascending number order."""

    def __init__(self, mtype=CON, code=EMPTY, mid=0, token=b"", options=None, payload=b""):
        self.mtype = mtype
        self.code = code
        self.mid = mid
        self.token = token
        self.options = [] if options is None else options
        self.payload = payload

    def opt(self, number, default=None):
        for num, val in self.options:
            if num == number:
                return val
        return default

    def opt_uint(self, number, default=None):
        for num, val in self.options:
            if num == number:
                return uint_decode(val)
        return default

    def opts(self, number):
        return [val for num, val in self.options if num == number]

    def add(self, number, value):
        # Keep options ordered by number; equal numbers keep insertion order.
        opts = self.options
        i = len(opts)
        while i > 0 and opts[i - 1][0] > number:
            i -= 1
        opts.insert(i, (number, value))
        return self

    def __eq__(self, other):
        return (isinstance(other, Message) and self.mtype == other.mtype and self.code == other.code
                and self.mid == other.mid and self.token == other.token
                and self.options == other.options and self.payload == other.payload)

    def __repr__(self):
        return "<%s %s mid=%d tok=%s opts=%r payload=%r>" % (
            TYPE_NAMES[self.mtype], code_str(self.code), self.mid, self.token.hex() if self.token else "-",
            self.options, self.payload)


def uint_encode(n):
    # Minimal big-endian bytes: 0 encodes as the empty string.
    out = b""
    while n:
        out = bytes((n & 0xFF,)) + out
        n >>= 8
    return out


def parse(data):
    """Decode one datagram into a Message, or raise CoapError."""
    r = Reader(len(data))  # every option takes a byte at least: never too small
    r.load(data)
    d = r.data
    options = [(r.nums[k], bytes(d[r.starts[k]:r.ends[k]])) for k in range(r.count)]
    return Message(r.mtype, r.code, r.mid, r.token, options, r.payload)



def encode(msg):
    """Encode a Message to bytes (options are sorted by number, stably)."""
    opts = msg.options
    for i in range(1, len(opts)):
        if opts[i][0] < opts[i - 1][0]:
            opts = sorted(opts, key=lambda o: o[0])
            break
    size = 4 + len(msg.token) + 1 + len(msg.payload)
    for num, val in opts:
        size += 5 + len(val)
    w = Writer(size)
    w.header(msg.mtype, msg.code, msg.mid, msg.token)
    for num, val in opts:
        w.option(num, val)
    w.payload(msg.payload)
    return bytes(w.view())
