# OSCORE (RFC 8613) message protection for a CoAP endpoint, pure: bytes in, bytes out, no I/O.
# AES-CCM-16-64-128 (COSE algorithm 10) and HKDF-SHA256, the defaults aiocoap uses too.
#
#   SecurityContext  keys, Common IV and nonces (3.2, 5.2); protect/unprotect of requests and
#                    responses (8.1-8.4), responses either reusing the request's nonce or with
#                    their own Partial IV; holds a SenderSequence and a ReplayWindow
#   SenderSequence   the Sender Sequence Number, persisted ahead in steps (7.2, B.1.1)
#   ReplayWindow     32-wide anti-replay window, "unknown" after a boot until an Echo (B.1.2)
#   verify_request   8.2 steps 2-6 for a server, with a status for each error response
#   option / plaintext helpers: the OSCORE option value (6.1), the Class E / Class U split (4.1)
#                    and the plaintext "code, inner options, payload" (5.3)
#
# Keys stay inside the context; nothing here prints or logs. Sequence numbers only go forward,
# so with a persisted SenderSequence a nonce is never used twice under one key.
#
# A server's request layer, for a request with an OSCORE option (9):
#   status, ctx, pt, req = verify_request(contexts, option_value, payload)
#     MALFORMED: 4.02; NO_CONTEXT, REPLAY: 4.01; DECRYPT_FAILED: 4.00 (unprotected, Max-Age 0)
#     UNSYNCED: if the inner Echo is the one sent, ctx.replay.start(piv_int(req[1])) and go on;
#               else answer a protected 4.01 carrying a new Echo (it gets its own Partial IV)
#   code, inner, body = decode_plaintext(pt) (None: malformed inside: a protected 4.00), with
#   the outer Class U options merged back
#   before each protect: if ctx.sequence.due(): persist v = ctx.sequence.reserve() atomically,
#   then ctx.sequence.persisted(v)
#   opt, ct = ctx.protect_response(encode_plaintext(rcode, inner, body), req); send code
#   outer_code(False, observe), the outer options plus (9, opt), payload ct. Keep req for the
#   notifications of an observation: each later one gets its own Partial IV.
from firmware.coap import uint_decode
from firmware.compat import const
from firmware.oscore_crypto import aes_ecb, ccm_decrypt, ccm_encrypt

_ALG = const(10)        # COSE AES-CCM-16-64-128
_KEY_LEN = const(16)
_NONCE_LEN = const(13)
_TAG_LEN = const(8)
_MAX_ID = const(7)      # nonce length - 6 (3.3)
_MAX_PIV = const(5)
_FLAG_N = const(0x07)   # Partial IV length
_FLAG_K = const(0x08)   # kid present
_FLAG_H = const(0x10)   # kid context present
_FLAG_RESERVED = const(0xE0)
_WINDOW = const(32)     # replay window (3.2.2, aiocoap's default too)
_STEP = const(1024)     # sequence numbers between two writes of the persisted value

# Outer codes (4.2) and the options that stay outside (Class U only, 4.1).
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

_MAX_SEQ = 0xFFFFFFFFFF  # 2^40 - 1 (7.2.1); a long int on 32-bit ports, so not a const()
_ENCRYPT0 = b"\x83\x68Encrypt0\x40"  # AAD = ["Encrypt0", h'', external_aad] up to external_aad

# verify_request() results, and the error each answers with (RFC 8613 8.2, 7.4)
OK = const(0)
MALFORMED = const(1)       # 4.02 Bad Option, unprotected
NO_CONTEXT = const(2)      # 4.01 Unauthorized, unprotected
REPLAY = const(3)          # 4.01 Unauthorized, unprotected
DECRYPT_FAILED = const(4)  # 4.00 Bad Request, unprotected
UNSYNCED = const(5)        # authentic, but the window is unknown: check the inner Echo, else a
#                            protected 4.01 with an Echo option; its binding makes every
#                            response carry the server's own Partial IV


def _hlen(n):
    return 1 if n < 24 else (2 if n < 0x100 else 3)


def _put_head(buf, i, n):
    # The head of a CBOR byte string of n < 64 KiB bytes into buf at i; the new i.
    if n < 24:
        buf[i] = 0x40 | n
        return i + 1
    if n < 0x100:
        buf[i] = 0x58
        buf[i + 1] = n
        return i + 2
    buf[i] = 0x59
    buf[i + 1] = n >> 8
    buf[i + 2] = n & 0xFF
    return i + 3


def _put_bstr(buf, i, data):
    i = _put_head(buf, i, len(data))
    for b in data:
        buf[i] = b
        i += 1
    return i


def aad(request_kid, request_piv, class_i=b""):
    """AAD = Enc_structure ["Encrypt0", h'', external_aad] (5.4) over
    aad_array [1, [alg], request_kid, request_piv, Class I options]; one allocation."""
    lk = len(request_kid)
    lp = len(request_piv)
    li = len(class_i)
    n = 4 + _hlen(lk) + lk + _hlen(lp) + lp + _hlen(li) + li  # aad_array
    out = bytearray(11 + _hlen(n) + n)
    for i in range(11):
        out[i] = _ENCRYPT0[i]
    i = _put_head(out, 11, n)  # external_aad: the array wrapped in a byte string
    out[i] = 0x85
    out[i + 1] = 0x01
    out[i + 2] = 0x81
    out[i + 3] = _ALG
    i = _put_bstr(out, i + 4, request_kid)
    i = _put_bstr(out, i, request_piv)
    _put_bstr(out, i, class_i)
    return out


def piv_bytes(n):
    """Partial IV of sequence number n: big-endian, no leading zero bytes, 0 is b"\\x00"."""
    k = 1
    while n >> (k << 3):
        k += 1
    return n.to_bytes(k, "big")


def piv_int(piv):
    """A Partial IV as a number (an unsigned integer, as a CoAP option value is)."""
    return uint_decode(piv)


class SenderSequence:
    """The Sender Sequence Number (RFC 8613 7.2, Appendix B.1.1).

    The persisted value P promises that no number >= P has been used. At boot: seq =
    SenderSequence(P) and nothing can be taken until a larger value is persisted:
        if seq.due(): write(seq.reserve()) atomically, then seq.persisted(that value)
    So a board writes once per boot and once per `step` messages, and never reuses a number."""

    def __init__(self, stored=0, step=_STEP):
        self.next = stored   # the next number to use
        self.limit = stored  # numbers below it are covered by the persisted value
        self.step = step

    def due(self):
        """True when a write must come before the next take()."""
        return self.next >= self.limit

    def reserve(self):
        """The value to persist now: covers the next `step` numbers."""
        return self.next + self.step

    def persisted(self, value):
        if value > self.limit:
            self.limit = value

    def take(self):
        """The next number, used up; -1 when due() (persist first) or past 2^40 - 1."""
        n = self.next
        if n >= self.limit or n > _MAX_SEQ:
            return -1
        self.next = n + 1
        return n


class ReplayWindow:
    """Anti-replay window of the last `size` sequence numbers (RFC 8613 7.4; RFC 6347 4.1.2.6),
    without allocation per message: bit (n % size) of `bits` marks n for top - size < n <= top.

    After a boot the window is unknown (known False): nothing is fresh until an Echo round
    trip proves a request new; start(seq) then makes seq the lower limit (Appendix B.1.2)."""

    def __init__(self, size=_WINDOW, known=False):
        self.size = size
        self.bits = bytearray((size + 7) >> 3)
        self.top = -1
        self.known = known

    def fresh(self, n):
        """True if sequence number n may be accepted (the window is known, n is not too old
        and was not received before)."""
        if not self.known or n < 0:
            return False
        if n > self.top:
            return True
        if n <= self.top - self.size:
            return False
        p = n % self.size
        return not self.bits[p >> 3] & (1 << (p & 7))

    def mark(self, n):
        """Record n as received (after it was verified)."""
        bits = self.bits
        size = self.size
        top = self.top
        if n > top:
            if n - top >= size:
                for i in range(len(bits)):
                    bits[i] = 0
            else:
                for k in range(top + 1, n):
                    p = k % size
                    bits[p >> 3] &= ~(1 << (p & 7))
            self.top = n
        p = n % size
        bits[p >> 3] |= 1 << (p & 7)

    def check_and_mark(self, n):
        """fresh(n), and if so mark(n): True when n is accepted."""
        if not self.fresh(n):
            return False
        self.mark(n)
        return True

    def start(self, n):
        """An Echo-verified request with number n: the window becomes known, with n accepted
        and everything up to n counting as received (n is the lower limit)."""
        bits = self.bits
        for i in range(len(bits)):
            bits[i] = 0xFF
        self.top = n
        self.known = True

    def forget(self):
        """Back to "unknown", as after a boot."""
        self.known = False


class SecurityContext:
    """An OSCORE security context (RFC 8613 3) for AES-CCM-16-64-128 and HKDF-SHA256.

    secret: Master Secret; salt: Master Salt (default empty); sender_id / recipient_id: this
    endpoint's and the peer's IDs (at most 7 bytes, may be empty); id_context: ID Context or None.
    sequence: a SenderSequence (default: starts at 0, nothing persisted yet);
    replay: a ReplayWindow (default: unknown, as after a boot).

    A request binding ("request" below) is what a response needs from its request: a list
    [request kid, request Partial IV, request nonce already reused]. Keep it as long as
    responses may follow (an observation's lifetime)."""

    def __init__(self, secret, sender_id, recipient_id, salt=b"", id_context=None,
                 sequence=None, replay=None):
        from firmware.oscore_keys import derive   # boot-only: freed once the contexts are made
        sender_key, recipient_key, self.common_iv = derive(secret, sender_id, recipient_id, salt,
                                                           id_context)
        # The keys live on only inside the two block ciphers.
        self._send = aes_ecb(sender_key)
        self._recv = aes_ecb(recipient_key)
        self.sender_id = bytes(sender_id)
        self.recipient_id = bytes(recipient_id)
        self.id_context = None if id_context is None else bytes(id_context)
        self.sequence = SenderSequence() if sequence is None else sequence
        self.replay = ReplayWindow() if replay is None else replay

    def nonce(self, id_piv, piv):
        """AEAD nonce (5.2): [len(ID_PIV), ID_PIV left-padded to 7, PIV left-padded to 5]
        XOR Common IV."""
        n = bytearray(self.common_iv)
        n[0] ^= len(id_piv)
        o = 1 + _MAX_ID - len(id_piv)
        for i in range(len(id_piv)):
            n[o + i] ^= id_piv[i]
        o = _NONCE_LEN - len(piv)
        for i in range(len(piv)):
            n[o + i] ^= piv[i]
        return n

    def _take(self):
        n = self.sequence.take()
        if n < 0:
            raise ValueError("OSCORE sender sequence number not persisted ahead")
        return piv_bytes(n)

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

    # -- server ----------------------------------------------------------------------------
    def unprotect_request(self, piv, payload, class_i=b""):
        """RFC 8613 8.2 steps 4-6, without the replay window (see verify_request()): returns
        (plaintext, request binding), or None if it does not verify."""
        kid = self.recipient_id
        pt = ccm_decrypt(self._recv, self.nonce(kid, piv), aad(kid, piv, class_i), payload, _TAG_LEN)
        if pt is None:
            return None
        return pt, [kid, piv, False]

    def protect_response(self, plaintext, request, new_piv=False, class_i=b""):
        """RFC 8613 8.3: returns (OSCORE option value, ciphertext) of a response to `request`.
        The first response may reuse the request's nonce (empty option value); a response with
        new_piv, and any later response to the same request (Observe notifications), carries its
        own Partial IV from the Sender Sequence Number instead."""
        kid, rpiv = request[0], request[1]
        if new_piv or request[2]:
            piv = self._take()
            nonce = self.nonce(self.sender_id, piv)
            opt = option_value(piv)
        else:
            request[2] = True
            nonce = self.nonce(kid, rpiv)
            opt = b""
        return opt, ccm_encrypt(self._send, nonce, aad(kid, rpiv, class_i), plaintext, _TAG_LEN)


def find_context(contexts, kid, kid_context=None):
    """The context whose Recipient ID is kid (and ID Context kid_context, when one was sent)."""
    for c in contexts:
        if c.recipient_id == kid and (kid_context is None or c.id_context == kid_context):
            return c
    return None


def verify_request(contexts, option, payload, class_i=b""):
    """RFC 8613 8.2 steps 2-6 for a server: (status, context, plaintext, request binding).
    status is OK or one of the errors above; context is set for REPLAY, DECRYPT_FAILED, OK and
    UNSYNCED, plaintext and binding for OK and UNSYNCED. The window is marked only for OK; for UNSYNCED the caller
    checks the inner Echo and then calls context.replay.start(piv_int(binding[1]))."""
    fields = decode_option(option)
    if fields is None or fields[0] is None or fields[1] is None:
        return MALFORMED, None, None, None
    piv, kid, kid_context = fields
    ctx = find_context(contexts, kid, kid_context)
    if ctx is None:
        return NO_CONTEXT, None, None, None
    seq = piv_int(piv)
    window = ctx.replay
    if window.known and not window.fresh(seq):
        return REPLAY, ctx, None, None
    got = ctx.unprotect_request(piv, payload, class_i)
    if got is None:
        return DECRYPT_FAILED, ctx, None, None
    if not window.known:
        # Not known to be fresh: the same request may come again, so its answer (4.01 with
        # Echo) must not reuse the request's nonce (B.1.2): mark the nonce as used.
        got[1][2] = True
        return UNSYNCED, ctx, got[0], got[1]
    window.mark(seq)
    return OK, ctx, got[0], got[1]


# -- the OSCORE option value (6.1) -------------------------------------------------------------

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


def decode_option(value):
    """(Partial IV or None, kid or None, kid context or None), or None when malformed."""
    if not value:
        return None, None, None
    if not isinstance(value, bytes):
        value = bytes(value)
    end = len(value)
    flags = value[0]
    n = flags & _FLAG_N
    if flags & _FLAG_RESERVED or n > _MAX_PIV:
        return None
    i = 1 + n
    if i > end:
        return None
    piv = value[1:i] if n else None
    ctx = None
    if flags & _FLAG_H:
        if i >= end or i + 1 + value[i] > end:
            return None
        s = value[i]
        ctx = value[i + 1:i + 1 + s]
        i += 1 + s
    kid = None
    if flags & _FLAG_K:
        kid = value[i:]
    elif i != end:
        return None
    return piv, kid, ctx


# -- inner / outer (4.1, 4.2) and the plaintext (5.3) --------------------------------------------

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
