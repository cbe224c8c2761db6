# /health: how the board is doing, for dashboards. Observable; the app marks it changed
# every health_period_s. Its JSON and CBOR forms are in formats.py, loaded on first use.
from firmware.compat import const, ticks_diff

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_GET = const(0x01)
_CONTENT = const(0x45)
_METHOD_NOT_ALLOWED = const(0x85)
_NOT_ACCEPTABLE = const(0x86)
_ACCEPT = const(17)
_JSON = const(50)
_CBOR = const(60)


class Uptime:
    """Seconds since start, immune to ticks wrap-around as long as it is called every few days."""

    def __init__(self, clock):
        self.clock = clock
        self.last = clock()
        self.s = 0
        self.ms = 0    # kept below 1000, so no big ints on a board

    def __call__(self):
        now = self.clock()
        d = ticks_diff(now, self.last)
        if d > 0:
            self.last = now
            ms = self.ms + d
            self.s += ms // 1000
            self.ms = ms % 1000
        return self.s


class HealthResource:
    path = b"health"
    observable = True
    link = b'</health>;rt="health";ct="50 60";obs'

    def __init__(self, uptime, version, reset=None, rssi=None):
        self.uptime = uptime
        self.version = version
        self.reset = reset        # the last reset's cause ("wdt", ...), or None (host)
        self.rssi = rssi          # fn() -> dBm, or None (host)
        self.observers = None     # the server's ObserverTable, set by the app
        self.tail = None          # the constant end of the JSON form, built on first use

    def render(self, fmt):
        from firmware import formats  # JSON and CBOR: loaded by the first /health request
        return formats.health(self, fmt)

    def handle(self, req):
        if req.code != _GET:
            return _METHOD_NOT_ALLOWED, -1, b"GET only"
        accept = req.opt_uint(_ACCEPT, _JSON)
        if accept != _JSON and accept != _CBOR:
            return _NOT_ACCEPTABLE, -1, b"json (50) or cbor (60)"
        return _CONTENT, accept, self.render(accept)
