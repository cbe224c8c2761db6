# Block1 reassembly (RFC 7959 2.5) of request bodies up to max_payload bytes.
# One transfer at a time: a new block 0 from anyone replaces an unfinished one, so the
# state is one buffer of at most max_payload bytes, whatever clients send.
# (Block2 slicing of replies is in site.py.) Loaded on first use, not at boot (site.py).
from firmware.coap import uint_decode
from firmware.compat import const, ticks_diff

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_CONTINUE = const(0x5F)
_BAD_REQUEST = const(0x80)
_BAD_OPTION = const(0x82)
_REQUEST_ENTITY_INCOMPLETE = const(0x88)
_REQUEST_ENTITY_TOO_LARGE = const(0x8D)
_BLOCK1 = const(27)
_SIZE1 = const(60)

_CON = const(0)
_NON = const(1)
_ACK = const(2)
_MAX_SZX = const(6)          # 1024-byte blocks at most
_STALE_MS = const(60000)   # an unfinished transfer older than this is forgotten


class Block1:
    def __init__(self, max_payload):
        self.max_payload = max_payload
        self.addr = None
        self.path = None
        self.buf = None
        self.time = 0

    def clear(self):
        self.addr = None
        self.buf = None

    def feed(self, req, path, addr, now):
        """Take one block of req. Returns (code, block1_value): code None means the body is
        complete and now in req.payload; CONTINUE asks for the next block; else an error code."""
        num, more, szx = block_decode(req.opt(_BLOCK1))
        if szx == 7:
            return _BAD_OPTION, -1
        size = 16 << szx
        data = req.payload
        total = req.opt_uint(_SIZE1)
        end = num * size + len(data)
        if end > self.max_payload or (total is not None and total > self.max_payload):
            self.clear()
            return _REQUEST_ENTITY_TOO_LARGE, -1
        if more and len(data) != size:
            return _BAD_REQUEST, -1     # only the last block may be short
        if num == 0:
            self.addr = addr
            self.path = path
            self.buf = bytearray(data)
        elif (self.buf is None or self.addr != addr or self.path != path
              or len(self.buf) != num * size or ticks_diff(now, self.time) > _STALE_MS):
            return _REQUEST_ENTITY_INCOMPLETE, -1
        else:
            self.buf += data
        self.time = now
        if more:
            return _CONTINUE, block_encode(num, True, szx)
        req.payload = bytes(self.buf)
        self.clear()
        return None, block_encode(num, False, szx)


def block_decode(value):
    """Block1/Block2 option value -> (num, more, szx)."""
    v = uint_decode(value)
    return v >> 4, (v >> 3) & 1, v & 7


def block_encode(num, more, szx):
    return (num << 4) | (8 if more else 0) | szx

