# The few bytes of CBOR (RFC 8949) the firmware writes: small maps of text keys to
# bools, ints, text and null, for /alarm and /health. Reading is in cbor_read.py (PUT only).

_FALSE, _TRUE, _NULL = b"\xf4", b"\xf5", b"\xf6"


def head(major, n):
    """The initial byte(s) of an item: major type and length/value n >= 0."""
    m = major << 5
    if n < 24:
        return bytes((m | n,))
    if n < 0x100:
        return bytes((m | 24, n))
    if n < 0x10000:
        return bytes((m | 25, n >> 8, n & 0xFF))
    return bytes((m | 26, (n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))


def item(v):
    if v is None:
        return _NULL
    if v is True:
        return _TRUE
    if v is False:
        return _FALSE
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, str):
        v = v.encode()
    return head(3, len(v)) + v


def dumps_map(pairs):
    """pairs: sequence of (key, value), keys text. Returns the encoded map."""
    out = [head(5, len(pairs))]
    for k, v in pairs:
        out.append(item(k))
        out.append(item(v))
    return b"".join(out)
