# The request layer: critical options, routing, method and format checks, conditionals,
# block-wise glue, Observe registration, the one place a response is encoded, and discovery. The
# endpoint below calls request(); a protection layer may wrap this object. docs/design.md.
import sys

from firmware import log
from firmware.coap import uint_decode
from firmware.compat import const

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_CON = const(0)
_NON = const(1)
_ACK = const(2)
_GET = const(0x01)
_POST = const(0x02)
_PUT = const(0x03)
_CONTENT = const(0x45)
_CONTINUE = const(0x5F)
_BAD_OPTION = const(0x82)
_NOT_FOUND = const(0x84)
_METHOD_NOT_ALLOWED = const(0x85)
_NOT_ACCEPTABLE = const(0x86)
_PRECONDITION_FAILED = const(0x8C)
_REQUEST_ENTITY_TOO_LARGE = const(0x8D)
_UNSUPPORTED_CONTENT_FORMAT = const(0x8F)
_INTERNAL_SERVER_ERROR = const(0xA0)
_SERVICE_UNAVAILABLE = const(0xA3)
_PROXYING_NOT_SUPPORTED = const(0xA5)
_IF_MATCH = const(1)
_URI_HOST = const(3)
_IF_NONE_MATCH = const(5)
_OBSERVE = const(6)
_URI_PORT = const(7)
_URI_PATH = const(11)
_CONTENT_FORMAT = const(12)
_MAX_AGE = const(14)
_URI_QUERY = const(15)
_ACCEPT = const(17)
_BLOCK2 = const(23)
_BLOCK1 = const(27)
_SIZE2 = const(28)
_PROXY_URI = const(35)
_PROXY_SCHEME = const(39)
_SIZE1 = const(60)
_LINK_FORMAT = const(40)

# Critical options (odd numbers) this site understands; any other gets 4.02 (RFC 7252 5.4.1).
# A bit mask (bit n >> 1 for odd option n, so it stays a small int on a 32-bit board).
_KNOWN_CRITICAL = const((1 << (_IF_MATCH >> 1)) | (1 << (_URI_HOST >> 1)) | (1 << (_IF_NONE_MATCH >> 1))
                        | (1 << (_URI_PORT >> 1)) | (1 << (_URI_PATH >> 1)) | (1 << (_URI_QUERY >> 1))
                        | (1 << (_ACCEPT >> 1)) | (1 << (_BLOCK2 >> 1)) | (1 << (_BLOCK1 >> 1))
                        | (1 << (_PROXY_URI >> 1)) | (1 << (_PROXY_SCHEME >> 1)))
# Options the common path handles by itself (Reader.flags bits): a request with any other
# option takes the full checks in request(). Every elective (even) option below 29 is fine.
_COMMON = const((1 << _URI_HOST) | (1 << _OBSERVE) | (1 << _URI_PORT) | (1 << _URI_PATH)
                | (1 << _URI_QUERY) | (1 << _ACCEPT) | (1 << _BLOCK2)
                | 0x15555554)   # the even (elective) numbers 2 to 28
_MAX_SZX = const(6)          # 1024-byte blocks at most


class Site:
    """Routes requests to resources. A resource declares (class attributes):

    path        its URI path, b"alarm" or b"a/b" (one Uri-Path option per segment)
    methods     a bit mask of the request codes it takes: 1 << GET | 1 << PUT
    formats     the Content-Formats it answers in, the default first
    accepts     the Content-Formats of request bodies it takes (PUT/POST)
    observable  True if GET with Observe registers an observer
    link        its entry in /.well-known/core, or None
    handle(req, fmt) -> (code, payload): fmt is the negotiated format of a 2.xx answer
    render(fmt) -> the current representation (for notifications)

    The site answers 4.04, 4.05, 4.06 and 4.15 itself, and binds `notify` on each observable
    resource: calling resource.notify() tells the observe layer "I changed".
    """

    def __init__(self, endpoint, observe, max_payload):
        self.endpoint = endpoint
        self.observe = observe
        self.max_payload = max_payload
        self.routes = []          # the resources
        self.segments = []        # each route's path as a tuple of Uri-Path segments
        self.block1 = None        # Block1 reassembly, created on first use
        self.addr = None          # the request's source, while it is answered
        endpoint.handler = self
        endpoint.max_payload = max_payload

    def add(self, resource):
        self.routes.append(resource)
        self.segments.append(tuple(resource.path.split(b"/")))
        if resource.observable:
            observe = self.observe

            def notify():
                observe.changed(resource)
            resource.notify = notify
        return resource

    def find(self, req):
        segments = self.segments
        for i in range(len(segments)):
            if req.path_is(segments[i]):
                return self.routes[i]
        return None

    def request(self, req, addr, now, mcast):
        """Answer one request: the encoded reply (a view of the endpoint's writer), or None."""
        self.addr = addr
        res = self.find(req)
        block1 = -1
        if req.flags & ~_COMMON:
            # Uncommon options: the full checks (critical options, proxying, Block1, conditionals).
            nums = req.nums
            for k in range(req.count):  # an index scan: no option list is built
                num = nums[k]
                if num & 1 and (num > _PROXY_SCHEME or not (_KNOWN_CRITICAL >> (num >> 1)) & 1):
                    if req.mtype == _NON:
                        if not mcast:
                            self.endpoint.reset(req.mid, addr)  # rejecting a NON (RFC 7252 5.4.1)
                        return None
                    return self.reply(req, _BAD_OPTION, -1, b"")
                elif num == _PROXY_URI or num == _PROXY_SCHEME:
                    return self.reply(req, _PROXYING_NOT_SUPPORTED, -1, b"")
            if res is not None:
                if req.flags & (1 << _BLOCK1) and (req.code == _PUT or req.code == _POST):
                    if self.block1 is None:
                        # Loaded at boot in a roomy heap, else never (docs/design.md, rule 5)
                        mod = sys.modules.get("firmware.blockwise")
                        if mod is None:
                            return self.reply(req, _SERVICE_UNAVAILABLE, -1, b"")
                        self.block1 = mod.Block1(self.max_payload)
                    code, block1 = self.block1.feed(req, res.path, addr, now)
                    if code == _REQUEST_ENTITY_TOO_LARGE:
                        return self.reply(req, code, -1, b"", size1=self.max_payload)
                    if code is not None:
                        return self.reply(req, code, -1, b"", block1=block1)
                    # The last block: the body is whole, and the final answer echoes block1.
                # No ETags here: If-None-Match fails on an existing resource, If-Match only
                # matches "exists".
                if req.flags & (1 << _IF_NONE_MATCH):
                    return self.reply(req, _PRECONDITION_FAILED, -1, b"")
                for k in range(req.count):
                    if nums[k] == _IF_MATCH and req.ends[k] > req.starts[k]:
                        return self.reply(req, _PRECONDITION_FAILED, -1, b"")
        if res is None:
            return self.reply(req, _NOT_FOUND, -1, b"")
        code = req.code
        if not (res.methods >> code) & 1:
            return self.reply(req, _METHOD_NOT_ALLOWED, -1, b"")
        fmt = res.formats[0]
        if code != _GET:
            cf = req.opt_uint(_CONTENT_FORMAT, fmt)
            if cf not in res.accepts:
                return self.reply(req, _UNSUPPORTED_CONTENT_FORMAT, -1, b"")
            if cf in res.formats:
                fmt = cf      # answer in the format we were spoken to in, unless asked otherwise
        accept = req.opt_uint(_ACCEPT)
        if accept is not None:
            if accept not in res.formats:
                return self.reply(req, _NOT_ACCEPTABLE, -1, b"")
            fmt = accept
        if len(req.payload) > self.max_payload:
            return self.reply(req, _REQUEST_ENTITY_TOO_LARGE, -1, b"", size1=self.max_payload)
        try:
            code, payload = res.handle(req, fmt)
        except MemoryError:
            # No room: a temporary condition (RFC 7252 5.9.3.4). The answer is built in
            # preallocated buffers; a log line would allocate.
            return self.reply(req, _SERVICE_UNAVAILABLE, -1, b"out of memory")
        except Exception as e:
            log.error("handler for /%s failed: %r", res.path.decode(), e)
            return self.reply(req, _INTERNAL_SERVER_ERROR, -1, b"")
        if code >> 5 != 2:
            fmt = -1          # an error carries a diagnostic, not a representation
        if mcast:
            if not payload:
                return None   # e.g. a filter that matched nothing: stay silent (RFC 6690 4.1)
            return self.reply(req, code, fmt, payload)
        observe = -1
        if req.flags & (1 << _OBSERVE) and res.observable and req.code == _GET:
            if code == _CONTENT and req.opt_uint(_OBSERVE) == 0:
                observe = self.observe.register(addr, req, res, fmt)
            elif code >> 5 == 2:
                self.observe.forget(addr, req.token)   # deregistration (RFC 7641 3.6)
        return self.reply(req, code, fmt, payload, observe, block1=block1)

    def reply(self, req, code, fmt, payload, observe=-1, size1=-1, block1=-1, size=_MAX_SZX):
        """Encode the answer to req: piggybacked on the ACK of a CON, else a NON of its own.
        size: the largest Block2 size to use, as an SZX (the amplification bound lowers it)."""
        block = -1
        size2 = -1
        body = payload
        if code >> 5 != 2:
            if req.flags & (1 << _OBSERVE) and req.code == _GET:
                # A failed registration: forget any entry (RFC 7641 4.1).
                self.observe.forget(self.addr, req.token)
        elif req.flags & (1 << _BLOCK2) or len(payload) > (16 << size):
            bad, payload, block, size2 = block2(req.opt(_BLOCK2), payload, size)
            if bad:
                return self.reply(req, _BAD_OPTION, -1, b"")
        w = self.endpoint.header(req, code)
        if observe >= 0:
            w.option_uint(_OBSERVE, observe)
        if fmt >= 0:
            w.option_uint(_CONTENT_FORMAT, fmt)
        if observe >= 0:
            w.option_uint(_MAX_AGE, self.observe.max_age)
        if block >= 0:
            w.option_uint(_BLOCK2, block)
        if block1 >= 0:
            w.option_uint(_BLOCK1, block1)
        if size2 >= 0:
            w.option_uint(_SIZE2, size2)
        if size1 >= 0:
            w.option_uint(_SIZE1, size1)
        w.payload(payload)
        out = w.view()
        over = len(out) - 3 * len(req.data)
        if over > 0 and self.observe.key is None:
            # No more than 3x the request's bytes to a source nobody verified (RFC 7252 11.3):
            # an error loses its diagnostic, a body goes block-wise in smaller blocks. A
            # protected request (observe.key set) proved its source. README.md, "Under attack".
            if code >> 5 != 2:
                if payload:
                    return self.reply(req, code, fmt, b"", observe, size1, block1)
            elif size:
                over = len(payload) - over
                size -= 1
                while size and 16 << size > over:
                    size -= 1
                return self.reply(req, code, fmt, body, observe, size1, block1, size)
        return out


def block2(value, payload, size):
    """Block2 (RFC 7959 2.4) for a 2.xx reply, in blocks of at most 16 << size bytes (size: an
    SZX). value: the request's Block2 option or None. (bad, block of payload, Block2 value,
    Size2 or -1); bad: the request gets 4.02. A block asked for in a bigger size comes at the
    same offset. (Argument names the VM knows anyway: docs/design.md, RAM rule 3.)"""
    num = 0
    if value is not None:
        v = uint_decode(value)
        if v & 7 == 7:
            return True, None, -1, -1
        num = v >> 4
        if v & 7 < size:
            size = v & 7
        else:
            num <<= (v & 7) - size
    v = num << (size + 4)
    n = 16 << size
    if v and v >= len(payload):
        return True, None, -1, -1
    more = v + n < len(payload)
    return False, payload[v:v + n], (num << 4) | (8 if more else 0) | size, \
        len(payload) if num == 0 and more else -1


class WellKnownCore:
    """/.well-known/core (RFC 6690): every resource's link, with query filters (linkformat.py).
    The site's own resource: boot adds it after the others."""

    path = b".well-known/core"
    methods = const(1 << _GET)
    formats = (_LINK_FORMAT,)
    accepts = ()
    observable = False
    link = None

    def __init__(self, resources):
        self.resources = resources
        self.body = None

    def render(self, fmt=_LINK_FORMAT):
        if self.body is None:
            # Built once, on first use: the resource set is fixed after start-up.
            self.body = b",".join([r.link for r in self.resources if r.link])
        return self.body

    def handle(self, req, fmt):
        if not req.flags & (1 << _URI_QUERY):
            return _CONTENT, self.render(fmt)
        mod = sys.modules.get("firmware.linkformat")  # loaded at boot in a roomy heap, else never
        if mod is None:
            raise MemoryError  # the site answers 5.03
        links = []
        for r in self.resources:
            if r.link and mod.matches(r.link, req):
                links.append(r.link)
        return _CONTENT, b",".join(links)
