# Reads the CBOR a PUT may carry (RFC 8949): one flat map, or a simple value. Imported on the
# first CBOR PUT only. Anything else (nesting, indefinite lengths, tags, floats) is a ValueError.


class _Reader:
    def __init__(self, data):
        self.d = data
        self.i = 0

    def byte(self):
        b = self.d[self.i]  # IndexError on truncation: the caller maps it to 4.00
        self.i += 1
        return b

    def arg(self, info):
        if info < 24:
            return info
        if info > 27:
            raise ValueError("indefinite or reserved length")
        n = 0
        for _ in range(1 << (info - 24)):
            n = (n << 8) | self.byte()
        return n

    def item(self, depth):
        b = self.byte()
        major = b >> 5
        info = b & 31
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info == 22:
                return None
            raise ValueError("unsupported simple value")
        n = self.arg(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2 or major == 3:
            end = self.i + n
            if end > len(self.d):
                raise ValueError("truncated string")
            s = bytes(self.d[self.i:end])
            self.i = end
            return s.decode() if major == 3 else s
        if major == 5 and depth == 0:
            # Bounded by the payload size: each pair needs at least two bytes.
            if n * 2 > len(self.d):
                raise ValueError("map longer than the payload")
            m = {}
            for _ in range(n):
                k = self.item(1)
                m[k] = self.item(1)
            return m
        raise ValueError("unsupported CBOR item")


def loads(data):
    """Decode one top-level item (a flat map or a simple value). ValueError on anything else."""
    r = _Reader(data)
    try:
        v = r.item(0)
    except IndexError:
        raise ValueError("truncated CBOR")
    if r.i != len(data):
        raise ValueError("trailing bytes")
    return v
