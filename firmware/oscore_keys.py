# OSCORE key derivation (RFC 8613 3.2.1): HKDF-SHA256 (RFC 5869) on HMAC-SHA256 (RFC 2104) on
# hashlib.sha256. Boot-only: SecurityContext() loads it, start.py frees it once the contexts exist.
# Nothing here prints or logs a key.
import hashlib

from firmware.compat import const

_ALG = const(10)        # COSE AES-CCM-16-64-128
_KEY_LEN = const(16)
_NONCE_LEN = const(13)
_MAX_ID = const(7)
_HASH_BLOCK = const(64)
_HASH_LEN = const(32)
_IPAD = const(0x36)
_OPAD = const(0x5C)


def _bstr(out, data):
    # A CBOR byte string (RFC 8949) of fewer than 256 bytes, appended to out.
    n = len(data)
    if n < 24:
        out.append(0x40 | n)
    else:
        out.append(0x58)
        out.append(n)
    out += data


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104) of msg under key."""
    if len(key) > _HASH_BLOCK:
        key = hashlib.sha256(key).digest()
    k = bytearray(_HASH_BLOCK)
    for i in range(len(key)):
        k[i] = key[i] ^ _IPAD
    for i in range(len(key), _HASH_BLOCK):
        k[i] = _IPAD
    h = hashlib.sha256(k)
    h.update(msg)
    inner = h.digest()
    for i in range(_HASH_BLOCK):
        k[i] ^= _IPAD ^ _OPAD
    h = hashlib.sha256(k)
    h.update(inner)
    for i in range(_HASH_BLOCK):
        k[i] = 0
    return h.digest()


def hkdf_extract(salt, ikm):
    """PRK = HMAC-SHA256(salt, IKM); an empty salt is HashLen zero bytes (RFC 5869 2.2)."""
    return hmac_sha256(salt if salt else bytes(_HASH_LEN), ikm)


def hkdf_expand(prk, info, length):
    """The first length bytes of T(1) | T(2) | ... (RFC 5869 2.3), length <= 255 * 32."""
    if length > 255 * _HASH_LEN:
        raise ValueError("HKDF length")
    out = b""
    t = b""
    i = 1
    while len(out) < length:
        t = hmac_sha256(prk, t + info + bytes((i,)))
        out += t
        i += 1
    return out[:length]


def hkdf(salt, ikm, info, length):
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def _info(ident, id_context, kind, length):
    # info = [id, id_context / nil, alg_aead, type, L] (3.2.1); kind b"Key" or b"IV", L < 24
    out = bytearray(b"\x85")
    _bstr(out, ident)
    if id_context is None:
        out.append(0xF6)
    else:
        _bstr(out, id_context)
    out.append(_ALG)
    out.append(0x60 | len(kind))
    out += kind
    out.append(length)
    return out


def derive(secret, sender_id, recipient_id, salt=b"", id_context=None):
    """(Sender Key, Recipient Key, Common IV) from the input parameters (RFC 8613 3.2.1)."""
    if len(sender_id) > _MAX_ID or len(recipient_id) > _MAX_ID:
        raise ValueError("OSCORE IDs are at most 7 bytes")
    if sender_id == recipient_id:
        raise ValueError("Sender ID and Recipient ID must differ")
    prk = hkdf_extract(salt, secret)
    return (hkdf_expand(prk, _info(sender_id, id_context, b"Key", _KEY_LEN), _KEY_LEN),
            hkdf_expand(prk, _info(recipient_id, id_context, b"Key", _KEY_LEN), _KEY_LEN),
            hkdf_expand(prk, _info(b"", id_context, b"IV", _NONCE_LEN), _NONCE_LEN))
