# The JSON (50) and CBOR (60) forms of /alarm and /health, and reading a PUT body in them.
# Loaded by the first request (or observer) that asks for JSON or CBOR, not at boot: plain-text
# clients never pay its RAM. The CBOR writer (cbor.py) and reader (cbor_read.py) load on
# first CBOR use in turn.
from firmware import compat
from firmware.compat import const

_JSON = const(50)
_CBOR = const(60)


def alarm(fmt, on, changed, source):
    """/alarm's body: {"on":true,"changed":12,"source":"put"} (changed: uptime s at the change)."""
    if fmt == _JSON:
        return ('{"on":%s,"changed":%d,"source":"%s"}' % ("true" if on else "false", changed, source)).encode()
    from firmware import cbor
    return cbor.dumps_map((("on", on), ("changed", changed), ("source", source)))


def health(res, fmt):
    """/health's body for a HealthResource."""
    up = res.uptime()
    heap = compat.mem_free()
    n = len(res.observers) if res.observers else 0
    rssi = None
    if res.rssi is not None:
        try:
            rssi = res.rssi()
        except Exception:  # Wi-Fi down: report null, never fail the request
            pass
    # The state file: "ok", "off" (persist is off), or its fault ("save failed", "damaged at
    # boot", "missing at boot"), until a save works again.
    store = res.store
    store = "off" if store is None else store.error or "ok"
    # Access control: "open" (anyone may switch the alarm), or OSCORE with unprotected reads
    # ("oscore+read") or without ("oscore"): the protection layer's policy, when there is one.
    policy = 0 if res.observers is None else getattr(res.observers.endpoint.handler, "policy", 0)
    security = ("open", "oscore+read", "oscore")[policy]
    if fmt == _CBOR:
        from firmware import cbor
        return cbor.dumps_map((("uptime", up), ("heap", heap), ("observers", n), ("rssi", rssi),
                               ("store", store), ("version", res.version), ("reset", res.reset),
                               ("security", security)))
    if res.tail is None:
        # The constant tail of the JSON form, built once.
        res.tail = ',"version":"%s","reset":%s,"security":"%s"}' % (
            res.version, "null" if res.reset is None else '"%s"' % res.reset, security)
    return ('{"uptime":%d,"heap":%s,"observers":%d,"rssi":%s,"store":"%s"' % (
        up, "null" if heap is None else heap, n, "null" if rssi is None else rssi, store) + res.tail).encode()


def parse_state(fmt, body):
    """A JSON or CBOR PUT body -> True/False; None when it says nothing we understand."""
    try:
        if fmt == _JSON:
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
