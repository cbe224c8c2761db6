# The CoAP resources: /alarm and /.well-known/core. A handler gets the request and
# returns (code, content_format, payload); content_format -1 means none (diagnostics).
from firmware import coap

_ON = b"ON"
_OFF = b"OFF"
# A GET's answer, built once: returning a fresh tuple per request would allocate.
_GET_ON = (coap.CONTENT, coap.TEXT_PLAIN, _ON)
_GET_OFF = (coap.CONTENT, coap.TEXT_PLAIN, _OFF)


class AlarmResource:
    path = b"alarm"
    observable = True
    link = b'</alarm>;rt="alarm";if="core.a";ct=0;obs'

    def __init__(self, alarm, max_payload):
        self.alarm = alarm
        self.max_payload = max_payload

    def render(self, fmt):
        return _ON if self.alarm.on else _OFF

    def handle(self, req):
        code = req.code
        accept = req.opt_uint(coap.ACCEPT)
        if code == coap.GET:
            if accept is not None and accept != coap.TEXT_PLAIN:
                return coap.NOT_ACCEPTABLE, -1, b"text/plain (0) only"
            return _GET_ON if self.alarm.on else _GET_OFF
        if code == coap.PUT:
            cf = req.opt_uint(coap.CONTENT_FORMAT)
            if cf is not None and cf != coap.TEXT_PLAIN:
                return coap.UNSUPPORTED_CONTENT_FORMAT, -1, b"text/plain (0) only"
            if accept is not None and accept != coap.TEXT_PLAIN:
                return coap.NOT_ACCEPTABLE, -1, b"text/plain (0) only"
            word = req.payload.strip().upper()
            if word == _ON:
                self.alarm.set(True, "put")
            elif word == _OFF:
                self.alarm.set(False, "put")
            else:
                return coap.BAD_REQUEST, -1, b"payload must be ON or OFF"
            return coap.CHANGED, coap.TEXT_PLAIN, self.render(coap.TEXT_PLAIN)
        return coap.METHOD_NOT_ALLOWED, -1, b"GET or PUT"


class WellKnownCore:
    """RFC 6690 discovery: the links of every resource, in link format."""

    path = b".well-known/core"
    observable = False
    link = None

    def __init__(self, resources):
        self.resources = resources
        self.body = None

    def render(self, fmt):
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
        return coap.CONTENT, coap.LINK_FORMAT, self.render(coap.LINK_FORMAT)
