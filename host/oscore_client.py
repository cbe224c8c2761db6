# The OSCORE (RFC 8613) API of firmware/oscore.py with the client's side, for hosts, tests and
# tools (CPython, or the MicroPython VM with the board build): a board is a server and never loads
# this (RAM). `from host import oscore_client as oscore` has everything firmware.oscore has, plus:
#   SecurityContext  with protect_request (8.1), unprotect_response (8.4) and nonce() too
#   ReplayWindow     with check_and_mark() and forget() too
#   aad              for any kid, Partial IV and Class I options; piv_bytes, find_context
#   option_value     the OSCORE option value (6.1) with kid and kid context
#   split_options / outer_code   the Class E / Class U split (4.1), the outer code (4.2)
#   encode_options / decode_options / encode_plaintext / decode_plaintext   the plaintext (5.3)
from firmware.oscore import *  # noqa: F401,F403  (the server's side, as it is)
from firmware.oscore import SecurityContext as _Server, ReplayWindow as _Window
from firmware.oscore_crypto import ccm_decrypt, ccm_encrypt
from firmware.compat import const

_TAG_LEN = const(8)
_MAX_PIV = const(5)
_FLAG_K = const(0x08)   # kid present
_FLAG_H = const(0x10)   # kid context present
_POST = const(0x02)
_FETCH = const(0x05)
_CHANGED = const(0x44)
_CONTENT = const(0x45)
_URI_HOST = const(3)
_OBSERVE = const(6)
_URI_PORT = const(7)
_OSCORE = const(9)
_PROXY_URI = const(35)
_PROXY_SCHEME = const(39)


_ENCRYPT0 = b"\x83\x68Encrypt0\x40"


def _bstr(data):
    # data as a CBOR byte string (RFC 8949), shorter than 64 KiB
    n = len(data)
    if n < 24:
        return bytes((0x40 | n,)) + data
    return (bytes((0x58, n)) if n < 0x100 else bytes((0x59, n >> 8, n & 0xFF))) + data


def aad(request_kid, request_piv, class_i=b""):
    """AAD = Enc_structure ["Encrypt0", h'', external_aad] (5.4) over
    aad_array [1, [alg], request_kid, request_piv, Class I options]."""
    return _ENCRYPT0 + _bstr(b"\x85\x01\x81\x0a" + _bstr(request_kid) + _bstr(request_piv)
                             + _bstr(class_i))


def piv_int(piv):
    """A Partial IV as a number (an unsigned integer, as a CoAP option value is)."""
    return int.from_bytes(piv, "big")


def _id_part(ident):
    # The nonce's ID part (5.2): the length, then the ID left-padded to 7 bytes, as a number.
    return (len(ident) << 96) | (int.from_bytes(ident, "big") << 40)


def piv_bytes(n):
    """Partial IV of sequence number n: big-endian, no leading zero bytes, 0 is b"\\x00"."""
    k = 1
    while n >> (k << 3):
        k += 1
    return n.to_bytes(k, "big")


def find_context(contexts, kid, kid_context=None):
    """The context whose Recipient ID is kid (and ID Context kid_context, when one was sent)."""
    for c in contexts:
        if c.recipient_id == kid and (kid_context is None or c.id_context == kid_context):
            return c
    return None


class ReplayWindow(_Window):
    """firmware.oscore.ReplayWindow with two conveniences."""

    def check_and_mark(self, n):
        """fresh(n), and if so mark(n): True when n is accepted."""
        if not self.fresh(n):
            return False
        self.mark(n)
        return True

    def forget(self):
        """Back to "unknown", as after a boot."""
        self.known = False


class SecurityContext(_Server):
    """firmware.oscore.SecurityContext with the client's side too."""

    def nonce(self, id_piv, piv):
        """AEAD nonce (5.2): [len(ID_PIV), ID_PIV left-padded to 7, PIV left-padded to 5]
        XOR Common IV. nonce(b"", b"") is the Common IV."""
        n = self._rn ^ _id_part(self.recipient_id) ^ _id_part(id_piv)
        return (n ^ int.from_bytes(piv, "big")).to_bytes(13, "big")

    # -- client ----------------------------------------------------------------------------
    def protect_request(self, plaintext, kid_context=False, class_i=b""):
        """RFC 8613 8.1: returns (OSCORE option value, ciphertext, request binding). Uses up one
        Sender Sequence Number (ValueError if none is free: persist ahead first).
        kid_context: send the ID Context in the option too."""
        piv = self._take()
        kid = self.sender_id
        ct = ccm_encrypt(self._send, self.nonce(kid, piv), aad(kid, piv, class_i), plaintext, _TAG_LEN)
        opt = option_value(piv, kid, self.id_context if kid_context else None)
        return opt, ct, [kid, piv, False]

    def unprotect_response(self, piv, payload, request, class_i=b""):
        """RFC 8613 8.4: the plaintext of a response to `request` (its binding), or None.
        piv: the response's Partial IV from decode_option(), None if it has none (then the
        request's nonce is used)."""
        kid, rpiv = request[0], request[1]
        nonce = self.nonce(kid, rpiv) if piv is None else self.nonce(self.recipient_id, piv)
        return ccm_decrypt(self._recv, nonce, aad(kid, rpiv, class_i), payload, _TAG_LEN)


def option_value(piv=None, kid=None, kid_context=None):
    """Flag byte, Partial IV, kid context (length-prefixed), kid; empty when all are absent.
    A bytearray (one allocation), or b"" when empty."""
    lp = len(piv) if piv else 0
    if lp > _MAX_PIV:
        raise ValueError("Partial IV")
    flags = lp
    n = 1 + lp
    if kid_context is not None:
        flags |= _FLAG_H
        n += 1 + len(kid_context)
    if kid is not None:
        flags |= _FLAG_K
        n += len(kid)
    if not flags:
        return b""
    out = bytearray(n)
    out[0] = flags
    i = 1
    for b in piv if lp else b"":
        out[i] = b
        i += 1
    if kid_context is not None:
        out[i] = len(kid_context)
        i += 1
        for b in kid_context:
            out[i] = b
            i += 1
    if kid is not None:
        for b in kid:
            out[i] = b
            i += 1
    return out


def split_options(options):
    """The original message's options [(number, value)] -> (inner, outer) lists, order kept.
    Uri-Host, Uri-Port, Proxy-Uri and Proxy-Scheme stay outer only (Class U); Observe goes in
    both (for a notification the caller then empties the inner value, 4.1.3.5.2); every other
    option, known or not, is Class E. An OSCORE option here is nesting: ValueError."""
    inner = []
    outer = []
    for o in options:
        num = o[0]
        if num == _OSCORE:
            raise ValueError("OSCORE option in the original message")
        if num == _URI_HOST or num == _URI_PORT or num == _PROXY_URI or num == _PROXY_SCHEME:
            outer.append(o)
        else:
            inner.append(o)
            if num == _OBSERVE:
                outer.append(o)
    return inner, outer


def outer_code(request, observe=False):
    """The code of the OSCORE message (4.2, 4.1.3.5): POST / 2.04, or FETCH / 2.05 with Observe."""
    if request:
        return _FETCH if observe else _POST
    return _CONTENT if observe else _CHANGED


def _nibble(out, v):
    # RFC 7252 3.1: a delta or length nibble (returned) and its extended bytes (appended).
    if v < 13:
        return v
    if v < 269:
        out.append(v - 13)
        return 13
    v -= 269
    out.append(v >> 8)
    out.append(v & 0xFF)
    return 14


def _in_order(options):
    # Sorted by number, repeated options kept in their order. MicroPython's sort is not stable
    # (Uri-Path segments would swap): an insertion sort, on a copy, only when needed.
    for i in range(1, len(options)):
        if options[i][0] < options[i - 1][0]:
            break
    else:
        return options
    out = list(options)
    for i in range(1, len(out)):
        o = out[i]
        j = i
        while j and out[j - 1][0] > o[0]:
            out[j] = out[j - 1]
            j -= 1
        out[j] = o
    return out


def encode_options(options):
    """CoAP option encoding (RFC 7252 3.1) of [(number, value)], sorted by number (stable)."""
    out = bytearray()
    last = 0
    for num, val in _in_order(options):
        at = len(out)
        out.append(0)
        d = _nibble(out, num - last)
        out[at] = (d << 4) | _nibble(out, len(val))
        out += val
        last = num
    return bytes(out)


def decode_options(buf, i=0):
    """([(number, value)], payload) from buf[i:], or None when malformed."""
    opts = []
    num = 0
    end = len(buf)
    while i < end:
        b = buf[i]
        i += 1
        if b == 0xFF:
            if i == end:
                return None  # a payload marker needs a payload
            return opts, bytes(buf[i:])
        d = b >> 4
        n = b & 0x0F
        if d == 15 or n == 15:
            return None
        if d == 13:
            if i >= end:
                return None
            d = buf[i] + 13
            i += 1
        elif d == 14:
            if i + 1 >= end:
                return None
            d = (buf[i] << 8 | buf[i + 1]) + 269
            i += 2
        if n == 13:
            if i >= end:
                return None
            n = buf[i] + 13
            i += 1
        elif n == 14:
            if i + 1 >= end:
                return None
            n = (buf[i] << 8 | buf[i + 1]) + 269
            i += 2
        if i + n > end:
            return None
        num += d
        opts.append((num, bytes(buf[i:i + n])))
        i += n
    return opts, b""


def encode_plaintext(code, inner, payload=b""):
    """Plaintext (5.3): the original code, the Class E options, then 0xFF and the payload."""
    out = bytes((code,)) + encode_options(inner)
    return out + b"\xff" + payload if payload else out


def decode_plaintext(plaintext):
    """(code, inner options, payload) of a decrypted plaintext, or None when malformed."""
    if not plaintext:
        return None
    got = decode_options(plaintext, 1)
    if got is None:
        return None
    return plaintext[0], got[0], got[1]
