# /health: how the board is doing, for dashboards. Observable; the app calls notify() every
# health_period_s. Its JSON and CBOR forms are in formats.py (loaded at boot in a roomy heap).
import sys

from firmware.compat import const, ticks_diff

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_GET = const(0x01)
_CONTENT = const(0x45)
_JSON = const(50)
_CBOR = const(60)
_BLOCK2 = const(23)


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
    methods = const(1 << _GET)
    formats = (_JSON, _CBOR)
    accepts = ()
    observable = True
    link = b'</health>;rt="health";ct="50 60";obs'

    def __init__(self, uptime, version, observers, reset=None, rssi=None, store=None):
        self.uptime = uptime
        self.version = version
        self.observers = observers  # anything with len(): the observe layer
        self.reset = reset        # the last reset's cause ("wdt", ...), or None (host)
        self.rssi = rssi          # fn() -> dBm, or None (host)
        self.store = store        # the state file (persist.Store), or None: persist is off
        self.notify = None        # bound by the site
        self.tail = None          # the constant end of the JSON form, built on first use
        self.body = None          # the last body handed out, and its format
        self.fmt = -1

    def render(self, fmt):
        mod = sys.modules.get("firmware.formats")  # loaded at boot in a roomy heap, else never
        if mod is None:
            raise MemoryError  # the site answers 5.03 (docs/design.md, rule 5)
        return mod.health(self, fmt)

    def handle(self, req, fmt):
        # Block-wise (a small heap, or the amplification bound in site.py): the later blocks
        # come from the body block 0 was cut from, so the client puts together one snapshot.
        if self.body is None or self.fmt != fmt or not req.opt_uint(_BLOCK2, 0) >> 4:
            self.body = self.render(fmt)
            self.fmt = fmt
        return _CONTENT, self.body


def make(parts):
    """Boot (start.py): the resource, from the parts it needs."""
    return HealthResource(parts["uptime"], parts["version"], parts["observe"], parts["reset"], parts["rssi"],
                          parts["store"])
