# /alarm: GET the state, PUT it, observe it (text, JSON or CBOR). A resource as the site
# declares it (firmware/site.py, docs/design.md): path, methods, formats, handle(), render().
import sys

from firmware.compat import const

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_GET = const(0x01)
_PUT = const(0x03)
_CHANGED = const(0x44)
_CONTENT = const(0x45)
_BAD_REQUEST = const(0x80)
_CONTENT_FORMAT = const(12)
_TEXT_PLAIN = const(0)
_JSON = const(50)
_CBOR = const(60)


def parse_state(fmt, body):
    """A PUT body in text, JSON or CBOR -> True/False; None when it says nothing we understand."""
    if fmt == _TEXT_PLAIN:
        word = body.strip().upper()
        return True if word == b"ON" else False if word == b"OFF" else None
    # JSON and CBOR (formats.py): loaded at boot in a roomy heap, never by a request (a heap too
    # small for it answers 5.03: the site turns MemoryError into that). docs/design.md, rule 5.
    mod = sys.modules.get("firmware.formats")
    if mod is None:
        raise MemoryError
    return mod.parse_state(fmt, body)


class AlarmResource:
    path = b"alarm"
    methods = const((1 << _GET) | (1 << _PUT))
    formats = (_TEXT_PLAIN, _JSON, _CBOR)   # tuples of constants: part of the bytecode
    accepts = (_TEXT_PLAIN, _JSON, _CBOR)
    observable = True
    link = b'</alarm>;rt="alarm";if="core.a";ct="0 50 60";obs'

    def __init__(self, alarm, uptime):
        self.alarm = alarm
        self.uptime = uptime
        self.notify = None        # bound by the site: tells the observers
        # "changed" in JSON/CBOR: seconds since the firmware started, taken at the change.
        self.changed_s = uptime()
        self.cache = [None, None, None]   # rendered text/JSON/CBOR, until the state changes
        alarm.listeners.insert(0, self.changed)

    def changed(self, on, source):
        # Alarm listener: the state moved on (from a PUT or the input pin).
        self.changed_s = self.uptime()
        self.cache = [None, None, None]
        if self.notify is not None:
            self.notify()

    def render(self, fmt):
        i = (_TEXT_PLAIN, _JSON, _CBOR).index(fmt)
        body = self.cache[i]
        if body is None:
            a = self.alarm
            if i == 0:
                body = b"ON" if a.on else b"OFF"
            else:
                mod = sys.modules.get("firmware.formats")  # as in parse_state()
                if mod is None:
                    raise MemoryError
                body = mod.alarm(fmt, a.on, self.changed_s, a.source)
            self.cache[i] = body
        return body

    def handle(self, req, fmt):
        if req.code == _PUT:
            on = parse_state(req.opt_uint(_CONTENT_FORMAT, _TEXT_PLAIN), req.payload)
            if on is None:
                return _BAD_REQUEST, b'ON or OFF; {"on":true|false}'
            self.alarm.set(on, "put")
            if fmt == _TEXT_PLAIN:
                return (_CHANGED, b"ON") if on else (_CHANGED, b"OFF")
            return _CHANGED, self.render(fmt)
        if fmt == _TEXT_PLAIN:
            return (_CONTENT, b"ON") if self.alarm.on else (_CONTENT, b"OFF")
        return _CONTENT, self.render(fmt)


def make(parts):
    """Boot (start.py): the resource, from the parts it needs."""
    return AlarmResource(parts["alarm"], parts["uptime"])
