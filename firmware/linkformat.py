# RFC 6690 4.1 query filtering of /.well-known/core: ?href=/alarm*, ?rt=alarm, ?obs, ?ct=50 ...
# Imported only when a request carries a query. Links are our own, so the parsing can be simple.
from firmware.compat import const

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_URI_QUERY = const(15)


def _value_matches(value, want):
    # A trailing * is a prefix match. rt, if, ct may list several space-separated values.
    words = value.split(b" ") if b" " in value else (value,)
    for w in words:
        if want[-1:] == b"*":
            if w.startswith(want[:-1]):
                return True
        elif w == want:
            return True
    return False


def _attr(link, name):
    """The value of attribute `name` in one link (quotes removed); b"" for a bare flag; None if absent."""
    for part in link.split(b";")[1:]:
        eq = part.find(b"=")
        key = part if eq < 0 else part[:eq]
        if key == name:
            if eq < 0:
                return b""
            v = part[eq + 1:]
            if v[:1] == b'"' and v[-1:] == b'"':
                v = v[1:-1]
            return v
    return None


def matches(link, req):
    """True when the link passes every Uri-Query filter of the request."""
    for q in req.opts(_URI_QUERY):
        eq = q.find(b"=")
        name = q if eq < 0 else q[:eq]
        want = None if eq < 0 else q[eq + 1:]
        if name == b"href":
            value = link[1:link.find(b">")]
        else:
            value = _attr(link, name)
        if value is None:
            return False
        if want is not None and want != b"*" and not _value_matches(value, want):
            return False
    return True
