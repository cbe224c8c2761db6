# The host-side half of the codec: a Message object, parse() and encode().
# Tests and tools use these; the firmware reads with coap.Reader and writes with coap.Writer.
# Host-only (never on a board): tests and tools import it as `from host import coapmsg as coap`.
from firmware.blockwise import block_decode, block_encode  # noqa: F401
from firmware.coap import CoapError, Reader, Writer, uint_decode  # noqa: F401

CON = 0
NON = 1
ACK = 2
RST = 3


# Codes are the raw code byte: class << 5 | detail.
EMPTY = 0x00
GET = 0x01
POST = 0x02
PUT = 0x03
DELETE = 0x04
FETCH = 0x05
CREATED = 0x41
DELETED = 0x42
VALID = 0x43
CHANGED = 0x44
CONTENT = 0x45
CONTINUE = 0x5F
BAD_REQUEST = 0x80
UNAUTHORIZED = 0x81
BAD_OPTION = 0x82
NOT_FOUND = 0x84
METHOD_NOT_ALLOWED = 0x85
NOT_ACCEPTABLE = 0x86
REQUEST_ENTITY_INCOMPLETE = 0x88
PRECONDITION_FAILED = 0x8C
REQUEST_ENTITY_TOO_LARGE = 0x8D
UNSUPPORTED_CONTENT_FORMAT = 0x8F
INTERNAL_SERVER_ERROR = 0xA0
SERVICE_UNAVAILABLE = 0xA3
NOT_IMPLEMENTED = 0xA1
PROXYING_NOT_SUPPORTED = 0xA5

# Option numbers (RFC 7252 5.10, RFC 7641, RFC 7959).
IF_MATCH = 1
URI_HOST = 3
ETAG = 4
IF_NONE_MATCH = 5
OBSERVE = 6
URI_PORT = 7
OSCORE = 9
LOCATION_PATH = 8
URI_PATH = 11
CONTENT_FORMAT = 12
MAX_AGE = 14
URI_QUERY = 15
ACCEPT = 17
LOCATION_QUERY = 20
BLOCK2 = 23
BLOCK1 = 27
SIZE2 = 28
PROXY_URI = 35
PROXY_SCHEME = 39
SIZE1 = 60
ECHO = 252
NO_RESPONSE = 258

# Content-Format numbers.
TEXT_PLAIN = 0
LINK_FORMAT = 40
JSON = 50
CBOR = 60

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
