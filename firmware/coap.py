# CoAP message codec (RFC 7252 section 3). Pure: bytes in, Reader/Writer out; no I/O.
# The board needs only Reader and Writer. Message, parse(), encode() and the public names of
# the CoAP numbers (tests, tools) live in host/coapmsg.py, which never goes onto a board.
# Firmware modules fold the numbers they use as private const()s (a host test checks them).
from firmware.compat import const

# The numbers this module uses (public names: host/coapmsg.py).
_CON = const(0)
_RST = const(3)
_EMPTY = const(0x00)
_URI_PATH = const(11)


class CoapError(ValueError):
    """A datagram that is not a valid CoAP message.

    mtype and mid are set when the header could be read, so the caller can
    reject a malformed CON with RST (RFC 7252 4.2); otherwise they are None.
    """

    def __init__(self, reason, mtype=None, mid=None):
        super().__init__(reason)  # MicroPython's ValueError has no __init__ attribute to call
        self.reason = reason
        self.mtype = mtype
        self.mid = mid


def uint_decode(value):
    n = 0
    for b in value:
        n = (n << 8) | b
    return n


class Reader:
    """Decodes a datagram in place, into fixed arrays of option offsets: no per-packet lists.

    The server keeps one and load()s every request into it; values are sliced out only on
    demand. Reads like a Message (mtype, code, mid, token, payload, opt, opt_uint, options).
    A message with more than `size` options is refused with CoapError.
    """

    def __init__(self, size=32):
        from array import array
        self.max = size
        self.nums = array("H", bytes(2 * size))
        self.starts = array("H", bytes(2 * size))
        self.ends = array("H", bytes(2 * size))
        self.count = 0
        self.mtype = self.code = self.mid = 0
        self.flags = 0     # bit n: an option numbered n was seen (n < 29); bit 29: one >= 29
        self.path0 = 0     # the index of the first Uri-Path option (they are consecutive)
        self.npath = 0     # how many there are
        self.data = b""
        self.tkl = 0
        self.pstart = 0
        self.body = None
        self.fmt = -1      # the Content-Format the request layer chose for the answer

    def load(self, data):
        """Decode data in place. Raises CoapError for a malformed datagram. (This and read()
        keep to a few locals: in MicroPython a frame of more than 11 slots is a heap block per
        call, and that churn brings the next garbage collection closer. docs/design.md.)"""
        self.mtype = -1   # until the header is read
        if len(data) < 4:
            raise CoapError("shorter than a header")
        b0 = data[0]
        if b0 >> 6 != 1:
            raise CoapError("unknown version")  # silently ignored (RFC 7252 3)
        self.mid = (data[2] << 8) | data[3]
        self.mtype = (b0 >> 4) & 3
        self.tkl = b0 & 15
        self.code = data[1]
        if self.tkl > 8:
            raise CoapError("token length over 8", self.mtype, self.mid)
        if self.code == _EMPTY and len(data) > 4:
            raise CoapError("empty message with content", self.mtype, self.mid)
        if 4 + self.tkl > len(data):
            raise CoapError("truncated token", self.mtype, self.mid)
        self.data = data
        self.body = None
        self.read(data, 4 + self.tkl)
        return self

    def read(self, data, pos):
        # The options and payload marker (load()'s second half; a name the VM has anyway: RAM).
        self.count = 0
        self.flags = 0
        self.npath = 0
        self.pstart = len(data)
        num = 0
        while pos < len(data):
            delta = data[pos]
            pos += 1
            if delta == 0xFF:
                if pos == len(data):
                    raise CoapError("payload marker with no payload", self.mtype, self.mid)
                self.pstart = pos
                return
            length = delta & 15
            delta >>= 4
            if delta == 13:
                if pos >= len(data):
                    raise CoapError("truncated option", self.mtype, self.mid)
                delta = data[pos] + 13
                pos += 1
            elif delta == 14:
                if pos + 1 >= len(data):
                    raise CoapError("truncated option", self.mtype, self.mid)
                delta = ((data[pos] << 8) | data[pos + 1]) + 269
                pos += 2
            elif delta == 15:
                raise CoapError("reserved option delta 15", self.mtype, self.mid)
            if length == 13:
                if pos >= len(data):
                    raise CoapError("truncated option", self.mtype, self.mid)
                length = data[pos] + 13
                pos += 1
            elif length == 14:
                if pos + 1 >= len(data):
                    raise CoapError("truncated option", self.mtype, self.mid)
                length = ((data[pos] << 8) | data[pos + 1]) + 269
                pos += 2
            elif length == 15:
                raise CoapError("reserved option length 15", self.mtype, self.mid)
            num += delta
            if num > 0xFFFF:
                raise CoapError("option number too large", self.mtype, self.mid)
            if pos + length > len(data):
                raise CoapError("truncated option value", self.mtype, self.mid)
            if self.count == self.max:
                raise CoapError("too many options", self.mtype, self.mid)
            self.nums[self.count] = num
            self.starts[self.count] = pos
            pos += length
            self.ends[self.count] = pos
            self.flags |= 1 << (num if num < 29 else 29)
            if num == _URI_PATH:
                if not self.npath:
                    self.path0 = self.count
                self.npath += 1
            self.count += 1

    @property
    def token(self):
        return bytes(self.data[4:4 + self.tkl]) if self.tkl else b""

    @property
    def payload(self):
        if self.body is not None:
            return self.body
        return bytes(self.data[self.pstart:]) if self.pstart < len(self.data) else b""

    @payload.setter
    def payload(self, body):
        # A body reassembled from Block1 blocks stands in for this datagram's own payload.
        self.body = body

    def opts(self, number):
        """Every value of a repeatable option (Uri-Query, Location-Path), as a list of bytes."""
        d = self.data
        return [bytes(d[self.starts[k]:self.ends[k]]) for k in range(self.count) if self.nums[k] == number]

    def find(self, number):
        """Index of the first option with this number, or -1."""
        nums = self.nums
        for k in range(self.count):
            if nums[k] == number:
                return k
        return -1

    def opt(self, number, default=None):
        k = self.find(number)
        return default if k < 0 else bytes(self.data[self.starts[k]:self.ends[k]])

    def opt_uint(self, number, default=None):
        k = self.find(number)
        if k < 0:
            return default
        d = self.data
        v = 0
        for i in range(self.starts[k], self.ends[k]):
            v = (v << 8) | d[i]
        return v

    def path_is(self, segments):
        """True if the Uri-Path options are exactly these segments (a tuple of bytes), compared
        in place. A "/" inside one option is part of that segment (RFC 7252 6.5). Few locals and
        a range() loop: a frame of more than 11 slots would cost a heap block per call."""
        if self.npath != len(segments):
            return False
        for j in range(len(segments)):
            seg = segments[j]
            s = self.starts[self.path0 + j]
            if self.ends[self.path0 + j] - s != len(seg) or (seg and self.data.find(seg, s) != s):
                return False
        return True


class Writer:
    """Encodes one message into a reusable buffer, so replies allocate nothing.

    Call header(), then option*() in ascending option number, then payload();
    view() returns the encoded bytes (a memoryview valid until the next header()).
    `size` is a first guess: a message that needs more grows the buffer once.
    """

    def __init__(self, size=1280):
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)
        self.vn = -1
        self.v = None
        self.n = 0
        self.last = 0

    def header(self, mtype, code, mid, token):
        buf = self.buf
        tkl = len(token)
        buf[0] = 0x40 | (mtype << 4) | tkl
        buf[1] = code
        buf[2] = (mid >> 8) & 0xFF
        buf[3] = mid & 0xFF
        buf[4:4 + tkl] = token
        self.n = 4 + tkl
        self.last = 0
        return self

    def reply_header(self, mtype, code, mid, req):
        """header() with the token of a Reader request, copied without slicing it out.
        (Few locals: a MicroPython frame over 11 slots is a heap block per call.)"""
        self.buf[0] = 0x40 | (mtype << 4) | req.tkl
        self.buf[1] = code
        self.buf[2] = mid >> 8
        self.buf[3] = mid & 0xFF
        for i in range(4, 4 + req.tkl):
            self.buf[i] = req.data[i]
        self.n = 4 + req.tkl
        self.last = 0
        return self

    def _room(self, n):
        # Rare: the message outgrows the buffer. Grow it (views handed out before are stale).
        if n > len(self.buf):
            buf = bytearray(n + 64)
            buf[:self.n] = self.mv[:self.n]
            self.buf = buf
            self.mv = memoryview(buf)
            self.vn = -1

    def _opt_head(self, number, length):
        if number < self.last:
            raise ValueError("options out of order")
        self._room(self.n + 5 + length)
        delta = number - self.last
        self.last = number
        buf = self.buf
        i = self.n
        head = i
        i += 1
        if delta < 13:
            d = delta
        elif delta < 269:
            d = 13
            buf[i] = delta - 13
            i += 1
        else:
            d = 14
            buf[i] = (delta - 269) >> 8
            buf[i + 1] = (delta - 269) & 0xFF
            i += 2
        if length < 13:
            ln = length
        elif length < 269:
            ln = 13
            buf[i] = length - 13
            i += 1
        else:
            ln = 14
            buf[i] = (length - 269) >> 8
            buf[i + 1] = (length - 269) & 0xFF
            i += 2
        buf[head] = (d << 4) | ln
        self.n = i

    def option(self, number, value):
        self._opt_head(number, len(value))
        i = self.n
        self.buf[i:i + len(value)] = value
        self.n = i + len(value)
        return self

    def option_uint(self, number, value):
        i = self.n
        if 0 <= number - self.last < 13 and value < 256 and i < len(self.buf) - 2:
            # The common case (one header byte, at most one value byte), in a small frame.
            buf = self.buf
            if value:
                buf[i] = ((number - self.last) << 4) | 1
                buf[i + 1] = value
                self.n = i + 2
            else:
                buf[i] = (number - self.last) << 4
                self.n = i + 1
            self.last = number
            return self
        return self.write(number, value)

    def write(self, number, value):
        # option_uint() the long way (a name the VM has anyway: RAM).
        length = 0
        v = value
        while v:
            length += 1
            v >>= 8
        self._opt_head(number, length)
        i = self.n + length
        self.n = i
        while length:
            i -= 1
            length -= 1
            self.buf[i] = value & 0xFF
            value >>= 8
        return self

    def payload(self, data):
        if data:
            i = self.n
            self._room(i + 1 + len(data))
            self.buf[i] = 0xFF
            self.buf[i + 1:i + 1 + len(data)] = data
            self.n = i + 1 + len(data)
        return self

    def view(self):
        # Replies to the same request have the same length: reuse the last view then (no alloc).
        if self.n != self.vn:
            self.vn = self.n
            self.v = self.mv[:self.n]
        return self.v
