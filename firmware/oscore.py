# OSCORE (RFC 8613) message protection for a CoAP endpoint, pure: bytes in, bytes out, no I/O.
# AES-CCM-16-64-128 (COSE algorithm 10) and HKDF-SHA256, the defaults aiocoap uses too.
#
#   SecurityContext  keys, Common IV and nonces (3.2, 5.2); protect/unprotect of requests and
#                    responses (8.1-8.4), responses either reusing the request's nonce or with
#                    their own Partial IV; holds a SenderSequence and a ReplayWindow
#   SenderSequence   the Sender Sequence Number, persisted ahead in steps (7.2, B.1.1)
#   ReplayWindow     32-wide anti-replay window, "unknown" after a boot until an Echo (B.1.2)
#   verify_request   8.2 steps 2-6 for a server, with a status for each error response
#   decode_option    the OSCORE option value (6.1)
# The client side (protect_request, unprotect_response), the Class E / Class U split (4.1) and the
# plaintext codec (5.3) are in host/oscore_client.py: a board is a server and never loads them
# (RAM); the protection layer (protect.py) handles the plaintext of the server's own messages.
#
# Keys stay inside the context; nothing here prints or logs. Sequence numbers only go forward,
# so with a persisted SenderSequence a nonce is never used twice under one key.
#
# A server's request layer, for a request with an OSCORE option (9):
#   status, ctx, pt, req = verify_request(contexts, option_value, payload)
#     MALFORMED: 4.02; NO_CONTEXT, REPLAY: 4.01; DECRYPT_FAILED: 4.00 (unprotected, Max-Age 0)
#     UNSYNCED: if the inner Echo is the one sent, ctx.replay.start(<req[1] as a number>), go on;
#               else answer a protected 4.01 carrying a new Echo (it gets its own Partial IV)
#   the plaintext is the inner code, inner options and payload (None or malformed: a protected
#   4.00); the outer Class U options are merged back
#   before each protect: if ctx.sequence.due(): persist v = ctx.sequence.reserve() atomically,
#   then ctx.sequence.persisted(v)
#   opt, ct = ctx.protect_response(plaintext, req); send code
#   2.05 with an outer Observe, else 2.04, the outer options plus (9, opt), payload ct. Keep req for the
#   notifications of an observation: each later one gets its own Partial IV.
from firmware.compat import const
from firmware.oscore_crypto import ccm_decrypt, ccm_encrypt

_TAG_LEN = const(8)
_MAX_ID = const(7)      # nonce length - 6 (3.3)
_MAX_PIV = const(5)
_FLAG_N = const(0x07)   # Partial IV length
_FLAG_K = const(0x08)   # kid present
_FLAG_H = const(0x10)   # kid context present
_FLAG_RESERVED = const(0xE0)
_WINDOW = const(32)     # replay window (3.2.2, aiocoap's default too)
_STEP = const(1024)     # sequence numbers between two writes of the persisted value

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


def aad(request_kid, request_piv):
    """AAD = Enc_structure ["Encrypt0", h'', external_aad] (5.4) over
    aad_array [1, [alg], request_kid, request_piv, Class I options (none)], for a kid of at
    most 7 bytes and a Partial IV of at most 5 (host/oscore_client.py has the general one)."""
    lk = len(request_kid)
    lp = len(request_piv)
    out = bytearray(19 + lk + lp)
    out[:11] = _ENCRYPT0
    out[11] = 0x47 + lk + lp   # the byte string around aad_array: 7 + lk + lp bytes, < 24
    out[12:16] = b"\x85\x01\x81\x0a"
    out[16] = 0x40 | lk
    out[17:17 + lk] = request_kid
    out[17 + lk] = 0x40 | lp
    out[18 + lk:18 + lk + lp] = request_piv
    out[18 + lk + lp] = 0x40
    return out


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
    trip proves a request new; start(seq) then makes seq the lower limit (Appendix B.1.2).
    Until then verify_request() keeps in `top` the highest number it let through for an Echo."""

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

    def start(self, n):
        """An Echo-verified request with number n: the window becomes known, with n accepted
        and everything up to n counting as received (n is the lower limit)."""
        bits = self.bits
        for i in range(len(bits)):
            bits[i] = 0xFF
        self.top = n
        self.known = True


class SecurityContext:
    """An OSCORE security context (RFC 8613 3) for AES-CCM-16-64-128 and HKDF-SHA256, the
    server's side (host/oscore_client.py adds the client's).

    secret: Master Secret; salt: Master Salt (default empty); sender_id / recipient_id: this
    endpoint's and the peer's IDs (at most 7 bytes, may be empty); id_context: ID Context or None.
    sequence: a SenderSequence (default: starts at 0, nothing persisted yet);
    replay: a ReplayWindow (default: unknown, as after a boot).

    A request binding ("request" below) is what a response needs from its request: a list
    [request kid, request Partial IV, request nonce already reused] (a server's also has the
    request's AAD, which its responses share, the request's nonce and the context). Keep it as
    long as responses may follow (an observation's lifetime)."""

    id_context = None

    def __init__(self, secret, sender_id, recipient_id, salt=b"", id_context=None,
                 sequence=None, replay=None):
        from firmware.oscore_keys import derive   # boot-only: freed once the contexts are made
        # The keys (16 bytes each) go to oscore_crypto's ciphers as they are; nothing logs them.
        self._send, self._recv, iv = derive(secret, sender_id, recipient_id, salt, id_context)
        self.sender_id = bytes(sender_id)
        self.recipient_id = bytes(recipient_id)
        if id_context is not None:
            self.id_context = bytes(id_context)
        # The nonces of either side's Partial IVs, less the Partial IV (5.2), as numbers.
        iv = int.from_bytes(iv, "big")
        # [len(ID), ID left-padded to 7, 5 zero bytes] XOR Common IV, for either ID
        self._sn = iv ^ (len(sender_id) << 96) ^ (int.from_bytes(sender_id, "big") << 40)
        self._rn = iv ^ (len(recipient_id) << 96) ^ (int.from_bytes(recipient_id, "big") << 40)
        self.sequence = SenderSequence() if sequence is None else sequence
        self.replay = ReplayWindow() if replay is None else replay

    def _take(self):
        # The next Sender Sequence Number as a Partial IV: big-endian, no leading zero bytes.
        n = self.sequence.take()
        if n < 0:
            raise ValueError("OSCORE sender sequence number not persisted ahead")
        k = 1
        while n >> (k << 3):
            k += 1
        return n.to_bytes(k, "big")

    def unprotect_request(self, piv, payload):
        """RFC 8613 8.2 steps 4-6, without the replay window (see verify_request()): returns
        (plaintext, request binding), or None if it does not verify."""
        kid = self.recipient_id
        a = aad(kid, piv)
        nonce = (self._rn ^ int.from_bytes(piv, "big")).to_bytes(13, "big")
        pt = ccm_decrypt(self._recv, nonce, a, payload, _TAG_LEN)
        if pt is None:
            return None
        # a response's AAD is its request's (5.4), and the first may reuse its nonce
        return pt, [kid, piv, False, a, nonce, self]

    def protect_response(self, plaintext, request, new_piv=False):
        """RFC 8613 8.3: returns (OSCORE option value, ciphertext) of a response to `request`.
        The first response may reuse the request's nonce (empty option value); a response with
        new_piv, and any later response to the same request (Observe notifications), carries its
        own Partial IV from the Sender Sequence Number instead."""
        kid, rpiv = request[0], request[1]
        if new_piv or request[2]:
            piv = self._take()
            nonce = (self._sn ^ int.from_bytes(piv, "big")).to_bytes(13, "big")
            opt = bytes((len(piv),)) + piv   # flags (the Partial IV's length), Partial IV (6.1)
        else:
            request[2] = True   # the request's own nonce (its kid is our recipient_id)
            if len(request) > 4:
                nonce = request[4]
            else:
                nonce = (self._rn ^ int.from_bytes(rpiv, "big")).to_bytes(13, "big")
            opt = b""
        a = request[3] if len(request) > 3 else aad(kid, rpiv)
        return opt, ccm_encrypt(self._send, nonce, a, plaintext, _TAG_LEN)


def verify_request(contexts, option, payload):
    """RFC 8613 8.2 steps 2-6 for a server: (status, context, plaintext, request binding).
    status is OK or one of the errors above; context is set for REPLAY, DECRYPT_FAILED, OK and
    UNSYNCED, plaintext and binding for OK and UNSYNCED. The window is marked only for OK; for UNSYNCED the caller
    checks the inner Echo and then calls context.replay.start(<binding[1] as a number>)."""
    f = option[0] if option else 0
    if f & 0xF8 == _FLAG_K and f & _FLAG_N and f & _FLAG_N <= _MAX_PIV and len(option) > f & _FLAG_N:
        # the usual shape, a Partial IV and a kid, read here (decode_option() reads them all)
        piv = option[1:1 + (f & _FLAG_N)]
        kid = option[1 + (f & _FLAG_N):]
        kid_context = None
    else:
        fields = decode_option(option)
        if fields is None or fields[0] is None or fields[1] is None:
            return MALFORMED, None, None, None
        piv, kid, kid_context = fields
    for ctx in contexts:   # the one whose Recipient ID is kid (and ID Context, if sent)
        if ctx.recipient_id == kid and (kid_context is None or ctx.id_context == kid_context):
            break
    else:
        return NO_CONTEXT, None, None, None
    seq = int.from_bytes(piv, "big")
    window = ctx.replay
    if window.known:
        if not window.fresh(seq):
            return REPLAY, ctx, None, None
    elif seq <= window.top:
        # Unknown window: top is the highest number already answered with an Echo, so one old
        # request, sent again and again, does not cost a sequence number each time.
        return REPLAY, ctx, None, None
    got = ctx.unprotect_request(piv, payload)
    if got is None:
        return DECRYPT_FAILED, ctx, None, None
    if not window.known:
        # Not known to be fresh: the same request may come again, so its answer (4.01 with
        # Echo) must not reuse the request's nonce (B.1.2): mark the nonce as used.
        got[1][2] = True
        window.top = seq
        return UNSYNCED, ctx, got[0], got[1]
    window.mark(seq)
    return OK, ctx, got[0], got[1]


# -- the OSCORE option value (6.1) ----------------------------------------------------------

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
