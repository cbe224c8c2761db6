# The CoAP resources: /alarm and /.well-known/core. A handler gets the request and
# returns (code, content_format, payload); content_format -1 means none (diagnostics).
from firmware.health import Uptime
from firmware.compat import const

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_GET = const(0x01)
_PUT = const(0x03)
_CHANGED = const(0x44)
_CONTENT = const(0x45)
_BAD_REQUEST = const(0x80)
_METHOD_NOT_ALLOWED = const(0x85)
_NOT_ACCEPTABLE = const(0x86)
_UNSUPPORTED_CONTENT_FORMAT = const(0x8F)
_CONTENT_FORMAT = const(12)
_URI_QUERY = const(15)
_ACCEPT = const(17)
_TEXT_PLAIN = const(0)
_LINK_FORMAT = const(40)
_JSON = const(50)
_CBOR = const(60)

# Tuples of constants below are constants of the bytecode (no module globals, no allocation):
# (_TEXT_PLAIN, _JSON, _CBOR) is what /alarm offers; a plain GET's answer is built once, too.


def accept_format(req, formats, default):
    """The Content-Format to answer in: Accept if it is offered, default without Accept, else None."""
    accept = req.opt_uint(_ACCEPT)
    if accept is None:
        return default
    return accept if accept in formats else None


def parse_state(fmt, body):
    """A PUT body in text, JSON or CBOR -> True/False; None when it says nothing we understand."""
    if fmt == _TEXT_PLAIN:
        word = body.strip().upper()
        return True if word == b"ON" else False if word == b"OFF" else None
    from firmware import formats  # JSON or CBOR: loaded on first use
    return formats.parse_state(fmt, body)


class AlarmResource:
    path = b"alarm"
    observable = True
    link = b'</alarm>;rt="alarm";if="core.a";ct="0 50 60";obs'

    def __init__(self, alarm, max_payload, uptime=None):
        self.alarm = alarm
        self.max_payload = max_payload
        self.uptime = uptime or Uptime(alarm.clock)
        # "changed" in JSON/CBOR: seconds since the firmware started, taken at the change.
        self.changed_s = self.uptime()
        self.cache = [None, None, None]   # rendered text/JSON/CBOR, until the state changes
        alarm.listeners.insert(0, self.changed)

    def changed(self, on, source):
        # Alarm listener: the state moved on, so the cached bodies are stale.
        self.changed_s = self.uptime()
        self.cache = [None, None, None]

    def render(self, fmt):
        i = (_TEXT_PLAIN, _JSON, _CBOR).index(fmt)
        body = self.cache[i]
        if body is None:
            a = self.alarm
            if i == 0:
                body = b"ON" if a.on else b"OFF"
            else:
                from firmware import formats  # JSON or CBOR: loaded on first use
                body = formats.alarm(fmt, a.on, self.changed_s, a.source)
            self.cache[i] = body
        return body

    def handle(self, req):
        code = req.code
        if code == _GET:
            fmt = accept_format(req, (_TEXT_PLAIN, _JSON, _CBOR), _TEXT_PLAIN)
            if fmt is None:
                return _NOT_ACCEPTABLE, -1, b"text/plain (0), json (50) or cbor (60)"
            if fmt == _TEXT_PLAIN:
                return (_CONTENT, _TEXT_PLAIN, b"ON") if self.alarm.on else (_CONTENT, _TEXT_PLAIN, b"OFF")
            return _CONTENT, fmt, self.render(fmt)
        if code == _PUT:
            cf = req.opt_uint(_CONTENT_FORMAT, _TEXT_PLAIN)
            if cf not in (_TEXT_PLAIN, _JSON, _CBOR):
                return _UNSUPPORTED_CONTENT_FORMAT, -1, b"text/plain (0), json (50) or cbor (60)"
            fmt = accept_format(req, (_TEXT_PLAIN, _JSON, _CBOR), cf)
            if fmt is None:
                return _NOT_ACCEPTABLE, -1, b"text/plain (0), json (50) or cbor (60)"
            on = parse_state(cf, req.payload)
            if on is None:
                return _BAD_REQUEST, -1, b'ON or OFF; {"on":true|false}'
            self.alarm.set(on, "put")
            return _CHANGED, fmt, self.render(fmt)
        return _METHOD_NOT_ALLOWED, -1, b"GET or PUT"


class WellKnownCore:
    """RFC 6690 discovery: the links of every resource, in link format, with query filters."""

    path = b".well-known/core"
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

    def handle(self, req):
        if req.code != _GET:
            return _METHOD_NOT_ALLOWED, -1, b"GET only"
        accept = req.opt_uint(_ACCEPT)
        if accept is not None and accept != _LINK_FORMAT:
            return _NOT_ACCEPTABLE, -1, b"link-format (40) only"
        query = req.opt(_URI_QUERY)
        if query is None:
            return _CONTENT, _LINK_FORMAT, self.render(_LINK_FORMAT)
        from firmware import linkformat
        links = []
        for r in self.resources:
            if r.link and linkformat.matches(r.link, req):
                links.append(r.link)
        return _CONTENT, _LINK_FORMAT, b",".join(links)
