# The cryptography OSCORE (RFC 8613) needs, on what every MicroPython board has:
#   AES-CCM (RFC 3610) on cryptolib's AES, so that the block work runs in C: the CBC-MAC is one
#   CBC encryption over B_0, the encoded aad and the message (its last block is T); the counter
#   blocks A_0..A_k are one ECB encryption (boards have no CTR mode). A message over 16 bytes
#   is XORed as long integers (in C); a shorter one and the tag byte by byte (no allocation).
#   HMAC-SHA256 and HKDF-SHA256, needed only to derive the keys at boot, are in oscore_keys.py,
#   freed after boot.
# Pure: bytes in, bytes out. Nothing here prints or logs a key.
#
# Two cipher slots keep the last two keys used (whatever the direction), each with two
# encryptors: ECB, for the counter blocks (all of them in one call), and CBC, for the CBC-MAC
# (one call). A CBC encryptor carries its chaining value from one call to the next and cannot be
# reset, so the slot keeps that value too (the last block the encryptor output) and XORs it into
# B_0: a CBC-MAC from a zero IV. A server's exchange uses the same two keys again and again (the
# client's, for the request; its own, for the answer), so the key schedules are made once, not
# per message, and a context holds 16-byte keys, not ciphers.
# Every function runs to completion without yielding: one asyncio loop never interleaves two uses.
from cryptolib import aes   # MicroPython's; on CPython compat puts a stand-in in its place

from firmware.compat import const

_ECB = const(1)   # cryptolib's mode numbers
_CBC = const(2)

_KEYS = [None, None]                  # the key of each slot
_CIPHERS = [None, None, None, None]   # slot 0: ECB, CBC; slot 1: ECB, CBC
_IV = [None, None]                    # each slot's last MAC buffer: its last block is the
#                                       chaining value of the slot's CBC encryptor
_last = 0                             # the slot used last
_S = bytearray(32)                    # the key stream of a message of up to 16 bytes


def _use(key):
    # The slot holding key; a key in neither replaces the one not used last.
    global _last
    if _KEYS[0] == key:
        s = 0
    elif _KEYS[1] == key:
        s = 1
    else:
        s = 1 - _last
        _CIPHERS[2 * s] = aes(key, _ECB)
        _CIPHERS[2 * s + 1] = aes(key, _CBC, bytes(16))
        _IV[s] = None   # zero
        _KEYS[s] = bytes(key)
    _last = s
    return s


def _check(nonce, m):
    L = 15 - len(nonce)
    if L < 2 or L > 8 or m < 4 or m > 16 or m & 1:
        raise ValueError("CCM parameters")
    return L


def _mac(slot, nonce, L, aad, msg, n, m):
    # The CBC-MAC of B_0, l(a) a, msg, each zero-padded (RFC 3610 2.2), in one CBC call on a
    # new buffer; its last block is T (the first m bytes count) and the slot's chaining value,
    # so the buffer is kept as the slot's _IV (no copy of the block).
    la = len(aad)
    h = (2 if la < 0xFF00 else 6) if la else 0
    o = 16 + ((h + la + 15) & ~15)
    buf = bytearray(o + ((n + 15) & ~15))
    buf[0] = (0x40 if la else 0) | ((m - 2) << 2) | (L - 1)
    buf[1:16 - L] = nonce
    buf[14] = (n >> 8) & 0xFF   # L >= 2, and n < 2^(8L)
    buf[15] = n & 0xFF
    if n >> 16:
        buf[16 - L:16] = n.to_bytes(L, "big")
    if h == 6:
        buf[16:22] = (0xFFFE00000000 | la).to_bytes(6, "big")
    elif h:
        buf[16] = la >> 8
        buf[17] = la & 0xFF
    buf[16 + h:16 + h + la] = aad
    buf[o:o + n] = msg
    iv = _IV[slot]
    if iv:   # the encryptor goes on from the last block it output: cancel it out of B_0
        e = len(iv) - 16
        for j in range(16):
            buf[j] ^= iv[e + j]
    # A long message's buffer is not kept: its last block goes to one made before the encryptor
    # moves on, so that a MemoryError cannot leave the slot with a stale chaining value.
    keep = buf if len(buf) <= 64 else bytearray(16)
    _CIPHERS[2 * slot + 1].encrypt(buf, buf)
    if keep is not buf:
        e = len(buf) - 16
        for j in range(16):
            keep[j] = buf[e + j]
    _IV[slot] = keep
    return buf


def _stream(slot, nonce, L, n):
    # S_0 S_1 ... S_k = E(K, A_0) E(K, A_1) ..., k = ceil(n / 16), in one bytearray, one call;
    # for a message of up to 16 bytes, in _S (every byte is written: no allocation).
    s = _S if n <= 16 else bytearray(16 + ((n + 15) & ~15))
    i = 0
    while i < len(s):
        s[i] = L - 1
        s[i + 1:i + 16 - L] = nonce
        for j in range(16 - L, 14):   # the counter's high bytes (none for OSCORE's L = 2)
            s[i + j] = 0
        j = i >> 4   # fits the last two bytes: at most 4097 blocks (L >= 2)
        s[i + 14] = j >> 8
        s[i + 15] = j & 0xFF
        i += 16
    _CIPHERS[2 * slot].encrypt(s, s)
    return s


def _ctr(out, data, s, n):
    # out[:n] = data[:n] XOR S_1 S_2 ...: the counter mode. A short one byte by byte (no
    # allocation), a longer one as long integers (in C).
    if n > 16:
        out[:n] = (int.from_bytes(data[:n], "big") ^ int.from_bytes(s[16:16 + n], "big")).to_bytes(n, "big")
    else:
        for j in range(n):
            out[j] = data[j] ^ s[16 + j]


def ccm_encrypt(key, nonce, aad, msg, m=8):
    """AES-CCM (RFC 3610) under the 16-byte key: ciphertext
    followed by the m-byte authentication value. L = 15 - len(nonce)."""
    L = _check(nonce, m)
    n = len(msg)
    if L < 8 and n >> (L << 3):
        raise ValueError("CCM message too long")
    k = _use(key)
    t = _mac(k, nonce, L, aad, msg, n, m)
    s = _stream(k, nonce, L, n)
    out = bytearray(n + m)
    _ctr(out, msg, s, n)
    e = len(t) - 16
    for j in range(m):   # U = T XOR first-M-bytes(S_0)
        out[n + j] = t[e + j] ^ s[j]
    return out


def ccm_decrypt(key, nonce, aad, data, m=8):
    """The plaintext of ciphertext-and-tag data, or None when the tag does not verify (the tag
    comparison takes the same time wherever the bytes differ)."""
    L = _check(nonce, m)
    n = len(data) - m
    if n < 0 or (L < 8 and n >> (L << 3)):
        return None
    k = _use(key)
    s = _stream(k, nonce, L, n)
    out = bytearray(n)
    _ctr(out, data, s, n)
    t = _mac(k, nonce, L, aad, out, n, m)
    e = len(t) - 16
    d = 0
    for j in range(m):
        d |= t[e + j] ^ s[j] ^ data[n + j]
    return None if d else out
