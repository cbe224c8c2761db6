# The CoAP resources: /alarm and /.well-known/core. A handler gets the request and
# returns (code, content_format, payload); content_format -1 means none (diagnostics).
from firmware import coap, cbor
from firmware.health import Uptime

_ON = b"ON"
_OFF = b"OFF"
_FORMATS = (coap.TEXT_PLAIN, coap.JSON, coap.CBOR)
# A plain GET's answer, built once: returning a fresh tuple per request would allocate.
_GET_ON = (coap.CONTENT, coap.TEXT_PLAIN, _ON)
_GET_OFF = (coap.CONTENT, coap.TEXT_PLAIN, _OFF)


def accept_format(req, offered, default):
    """The Content-Format to answer in: Accept if it is offered, default without Accept, else None."""
    accept = req.opt_uint(coap.ACCEPT)
    if accept is None:
        return default
    return accept if accept in offered else None


def parse_state(cf, body):
    """A PUT body in text, JSON or CBOR -> True/False; None when it says nothing we understand."""
    if cf == coap.TEXT_PLAIN:
        word = body.strip().upper()
        return True if word == _ON else False if word == _OFF else None
    try:
        if cf == coap.JSON:
            import json
            v = json.loads(body)
        else:
            from firmware.cbor_read import loads
            v = loads(body)
    except (ValueError, UnicodeError):
        return None
    if isinstance(v, dict):
        v = v.get("on")
    return v if v is True or v is False else None


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
        alarm.listeners.insert(0, self._on_change)

    def _on_change(self, on, source):
        self.changed_s = self.uptime()
        self.cache = [None, None, None]

    def render(self, fmt):
        i = _FORMATS.index(fmt)
        body = self.cache[i]
        if body is None:
            a = self.alarm
            if i == 0:
                body = _ON if a.on else _OFF
            elif i == 1:
                body = ('{"on":%s,"changed":%d,"source":"%s"}' % (
                    "true" if a.on else "false", self.changed_s, a.source)).encode()
            else:
                body = cbor.dumps_map((("on", a.on), ("changed", self.changed_s), ("source", a.source)))
            self.cache[i] = body
        return body

    def handle(self, req):
        code = req.code
        if code == coap.GET:
            fmt = accept_format(req, _FORMATS, coap.TEXT_PLAIN)
            if fmt is None:
                return coap.NOT_ACCEPTABLE, -1, b"text/plain (0), json (50) or cbor (60)"
            if fmt == coap.TEXT_PLAIN:
                return _GET_ON if self.alarm.on else _GET_OFF
            return coap.CONTENT, fmt, self.render(fmt)
        if code == coap.PUT:
            cf = req.opt_uint(coap.CONTENT_FORMAT, coap.TEXT_PLAIN)
            if cf not in _FORMATS:
                return coap.UNSUPPORTED_CONTENT_FORMAT, -1, b"text/plain (0), json (50) or cbor (60)"
            fmt = accept_format(req, _FORMATS, cf)
            if fmt is None:
                return coap.NOT_ACCEPTABLE, -1, b"text/plain (0), json (50) or cbor (60)"
            on = parse_state(cf, req.payload)
            if on is None:
                return coap.BAD_REQUEST, -1, b'ON or OFF; {"on":true|false}'
            self.alarm.set(on, "put")
            return coap.CHANGED, fmt, self.render(fmt)
        return coap.METHOD_NOT_ALLOWED, -1, b"GET or PUT"


class WellKnownCore:
    """RFC 6690 discovery: the links of every resource, in link format, with query filters."""

    path = b".well-known/core"
    observable = False
    link = None

    def __init__(self, resources):
        self.resources = resources
        self.body = None

    def render(self, fmt=coap.LINK_FORMAT):
        if self.body is None:
            # Built once, on first use: the resource set is fixed after start-up.
            self.body = b",".join([r.link for r in self.resources if r.link])
        return self.body

    def handle(self, req):
        if req.code != coap.GET:
            return coap.METHOD_NOT_ALLOWED, -1, b"GET only"
        accept = req.opt_uint(coap.ACCEPT)
        if accept is not None and accept != coap.LINK_FORMAT:
            return coap.NOT_ACCEPTABLE, -1, b"link-format (40) only"
        query = req.opt(coap.URI_QUERY)
        if query is None:
            return coap.CONTENT, coap.LINK_FORMAT, self.render(coap.LINK_FORMAT)
        from firmware import linkformat
        links = []
        for r in self.resources:
            if r.link and linkformat.matches(r.link, req):
                links.append(r.link)
        return coap.CONTENT, coap.LINK_FORMAT, b",".join(links)
