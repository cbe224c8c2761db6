# The cryptography OSCORE (RFC 8613) needs, on what every MicroPython board has:
#   AES-CCM (RFC 3610) on the AES block encryption compat.aes_ecb gives (cryptolib's ECB mode;
#   counter mode is built here from single blocks). HMAC-SHA256 and HKDF-SHA256, needed only to
#   derive the keys at boot, are in oscore_boot.py, freed after boot.
# Pure: bytes in, bytes out. Nothing here prints, logs or keeps a key beyond the cipher object
# the caller holds. The scratch blocks below are shared: every function runs to completion
# without yielding, so one asyncio loop can never interleave two uses.
from firmware.compat import const


def aes_ecb(key):
    """AES-128 block encryption under key: .encrypt(src, dst) writes E(key, src) into dst."""
    from cryptolib import aes   # MicroPython's; on CPython compat puts a stand-in in its place
    return aes(key, 1)

_BLOCK = const(16)

_X = bytearray(16)  # CBC-MAC chaining value
_A = bytearray(16)  # counter block A_i
_S = bytearray(16)  # key stream block S_i = E(K, A_i)


def _check(nonce, m):
    L = 15 - len(nonce)
    if L < 2 or L > 8 or m < 4 or m > 16 or m & 1:
        raise ValueError("CCM parameters")
    return L


def _mac(enc, nonce, L, aad, msg, m):
    """CBC-MAC of B_0, the encoded aad and msg (RFC 3610 2.2): the tag T is _X[:m]."""
    x = _X
    n = len(msg)
    x[0] = (0x40 if aad else 0) | (((m - 2) >> 1) << 3) | (L - 1)
    for i in range(15 - L):
        x[1 + i] = nonce[i]
    for i in range(L):
        x[15 - i] = (n >> (i << 3)) & 0xFF
    enc.encrypt(x, x)
    la = len(aad)
    if la:
        # l(a), then a, then zero padding to a block boundary (XOR with zero is a no-op).
        if la < 0xFF00:
            x[0] ^= la >> 8
            x[1] ^= la & 0xFF
            pos = 2
        else:
            x[0] ^= 0xFF
            x[1] ^= 0xFE
            for i in range(4):
                x[2 + i] ^= (la >> ((3 - i) << 3)) & 0xFF
            pos = 6
        pos = _absorb(enc, x, aad, pos)
        if pos:
            enc.encrypt(x, x)
    if n and _absorb(enc, x, msg, 0):
        enc.encrypt(x, x)


def _absorb(enc, x, data, pos):
    for b in data:
        x[pos] ^= b
        pos += 1
        if pos == _BLOCK:
            enc.encrypt(x, x)
            pos = 0
    return pos


def _ctr(enc, nonce, L, src, dst, n):
    """dst[:n] = src[:n] XOR S_1 S_2 ...; leaves S_0 = E(K, A_0) in _S."""
    a = _A
    s = _S
    a[0] = L - 1
    for i in range(15 - L):
        a[1 + i] = nonce[i]
    i = 0
    ctr = 1
    while i < n:
        c = ctr
        for j in range(L):
            a[15 - j] = c & 0xFF
            c >>= 8
        enc.encrypt(a, s)
        k = n - i
        if k > _BLOCK:
            k = _BLOCK
        for j in range(k):
            dst[i + j] = src[i + j] ^ s[j]
        i += _BLOCK
        ctr += 1
    for j in range(L):
        a[15 - j] = 0
    enc.encrypt(a, s)


def ccm_encrypt(enc, nonce, aad, msg, m=8):
    """AES-CCM (RFC 3610) with the block cipher enc (from aes_ecb(key)): returns ciphertext
    followed by the m-byte authentication value, a new bytearray. L = 15 - len(nonce)."""
    L = _check(nonce, m)
    n = len(msg)
    if L < 8 and n >> (L << 3):
        raise ValueError("CCM message too long")
    out = bytearray(n + m)
    _mac(enc, nonce, L, aad, msg, m)
    _ctr(enc, nonce, L, msg, out, n)
    x = _X
    s = _S
    for j in range(m):
        out[n + j] = x[j] ^ s[j]
    return out


def ccm_decrypt(enc, nonce, aad, data, m=8):
    """The plaintext (a new bytearray) of ciphertext-and-tag data, or None when the tag does not
    verify (the tag comparison takes the same time wherever the bytes differ)."""
    L = _check(nonce, m)
    n = len(data) - m
    if n < 0 or (L < 8 and n >> (L << 3)):
        return None
    out = bytearray(n)
    _ctr(enc, nonce, L, data, out, n)
    _mac(enc, nonce, L, aad, out, m)  # uses _X only: S_0 stays in _S
    x = _X
    s = _S
    d = 0
    for j in range(m):
        d |= x[j] ^ s[j] ^ data[n + j]
    if d:
        for j in range(n):
            out[j] = 0
        return None
    return out


def equal(a, b):
    """Constant-time comparison of two byte strings (time depends on length only)."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
