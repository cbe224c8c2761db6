# firmware/oscore_crypto.py: AES-CCM against RFC 3610's packet vectors and the `cryptography`
# package, HMAC-SHA256 and HKDF-SHA256 against RFC 5869 and the standard library; each check
# runs under CPython and again under the MicroPython VM (the same cases, answers compared here).
import hashlib
import hmac
import os
import random
import subprocess

import pytest

from harness import ROOT, tool

from firmware import oscore_keys as kb  # HMAC and HKDF: boot-only
from firmware import oscore_crypto as oc

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM
except ImportError:
    AESCCM = None
from harness import needs_cryptography  # noqa: E402

H = bytes.fromhex

# RFC 3610 section 8, all 24 packet vectors: AES-128, L = 2 (13-byte nonce), M = 8 or 10.
# (key, nonce, aad, message, ciphertext + tag, M); the RFC prints aad + message as one packet.
K1 = "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF"
K2 = "D7828D13B2B0BDC325A76236DF93CC6B"
A8 = "0001020304050607"
A12 = "000102030405060708090A0B"
P23 = "08090A0B0C0D0E0F101112131415161718191A1B1C1D1E"
P19 = "0C0D0E0F101112131415161718191A1B1C1D1E"
RFC3610 = [
    (K1, "00000003020100A0A1A2A3A4A5", A8, P23,
     "588C979A61C663D2F066D0C2C0F989806D5F6B61DAC38417E8D12CFDF926E0", 8),
    (K1, "00000004030201A0A1A2A3A4A5", A8, P23 + "1F",
     "72C91A36E135F8CF291CA894085C87E3CC15C439C9E43A3BA091D56E10400916", 8),
    (K1, "00000005040302A0A1A2A3A4A5", A8, P23 + "1F20",
     "51B1E5F44A197D1DA46B0F8E2D282AE871E838BB64DA8596574ADAA76FBD9FB0C5", 8),
    (K1, "00000006050403A0A1A2A3A4A5", A12, P19,
     "A28C6865939A9A79FAAA5C4C2A9D4A91CDAC8C96C861B9C9E61EF1", 8),
    (K1, "00000007060504A0A1A2A3A4A5", A12, P19 + "1F",
     "DCF1FB7B5D9E23FB9D4E131253658AD86EBDCA3E51E83F077D9C2D93", 8),
    (K1, "00000008070605A0A1A2A3A4A5", A12, P19 + "1F20",
     "6FC1B011F006568B5171A42D953D469B2570A4BD87405A0443AC91CB94", 8),
    (K1, "00000009080706A0A1A2A3A4A5", A8, P23,
     "0135D1B2C95F41D5D1D4FEC185D166B8094E999DFED96C048C56602C97ACBB7490", 10),
    (K1, "0000000A090807A0A1A2A3A4A5", A8, P23 + "1F",
     "7B75399AC0831DD2F0BBD75879A2FD8F6CAE6B6CD9B7DB24C17B4433F434963F34B4", 10),
    (K1, "0000000B0A0908A0A1A2A3A4A5", A8, P23 + "1F20",
     "82531A60CC24945A4B8279181AB5C84DF21CE7F9B73F42E197EA9C07E56B5EB17E5F4E", 10),
    (K1, "0000000C0B0A09A0A1A2A3A4A5", A12, P19,
     "07342594157785152B074098330ABB141B947B566AA9406B4D999988DD", 10),
    (K1, "0000000D0C0B0AA0A1A2A3A4A5", A12, P19 + "1F",
     "676BB20380B0E301E8AB79590A396DA78B834934F53AA2E9107A8B6C022C", 10),
    (K1, "0000000E0D0C0BA0A1A2A3A4A5", A12, P19 + "1F20",
     "C0FFA0D6F05BDB67F24D43A4338D2AA4BED7B20E43CD1AA31662E7AD65D6DB", 10),
    (K2, "00412B4EA9CDBE3C9696766CFA", "0BE1A88BACE018B1",
     "08E8CF97D820EA258460E96AD9CF5289054D895CEAC47C",
     "4CB97F86A2A4689A877947AB8091EF5386A6FFBDD080F8E78CF7CB0CDDD7B3", 8),
    (K2, "0033568EF7B2633C9696766CFA", "63018F76DC8A1BCB",
     "9020EA6F91BDD85AFA0039BA4BAFF9BFB79C7028949CD0EC",
     "4CCB1E7CA981BEFAA0726C55D378061298C85C92814ABC33C52EE81D7D77C08A", 8),
    (K2, "00103FE41336713C9696766CFA", "AA6CFA36CAE86B40",
     "B916E0EACC1C00D7DCEC68EC0B3BBB1A02DE8A2D1AA346132E",
     "B1D23A2220DDC0AC900D9AA03C61FCF4A559A4417767089708A776796EDB723506", 8),
    (K2, "00764C63B8058E3C9696766CFA", "D0D0735C531E1BECF049C244",
     "12DAAC5630EFA5396F770CE1A66B21F7B2101C",
     "14D253C3967B70609B7CBB7C499160283245269A6F49975BCADEAF", 8),
    (K2, "00F8B678094E3B3C9696766CFA", "77B60F011C03E1525899BCAE",
     "E88B6A46C78D63E52EB8C546EFB5DE6F75E9CC0D",
     "5545FF1A085EE2EFBF52B2E04BEE1E2336C73E3F762C0C7744FE7E3C", 8),
    (K2, "00D560912D3F703C9696766CFA", "CD9044D2B71FDB8120EA60C0",
     "6435ACBAFB11A82E2F071D7CA4A5EBD93A803BA87F",
     "009769ECABDF48625594C59251E6035722675E04C847099E5AE0704551", 8),
    (K2, "0042FFF8F1951C3C9696766CFA", "D85BC7E69F944FB8",
     "8A19B950BCF71A018E5E6701C91787659809D67DBEDD18",
     "BC218DAA947427B6DB386A99AC1AEF23ADE0B52939CB6A637CF9BEC2408897C6BA", 10),
    (K2, "00920F40E56CDC3C9696766CFA", "74A0EBC9069F5B37",
     "1761433C37C5A35FC1F39F406302EB907C6163BE38C98437",
     "5810E6FD25874022E80361A478E3E9CF484AB04F447EFFF6F0A477CC2FC9BF548944", 10),
    (K2, "0027CA0C7120BC3C9696766CFA", "44A3AA3AAE6475CA",
     "A434A8E58500C6E41530538862D686EA9E81301B5AE4226BFA",
     "F2BEED7BC5098E83FEB5B31608F8E29C38819A89C8E776F1544D4151A4ED3A8B87B9CE", 10),
    (K2, "005B8CCBCD9AF83C9696766CFA", "EC46BB63B02520C33C49FD70",
     "B96B49E21D621741632875DB7F6C9243D2D7C2",
     "31D750A09DA3ED7FDDD49A2032AABF17EC8EBF7D22C8088C666BE5C197", 10),
    (K2, "003EBE94044B9A3C9696766CFA", "47A65AC78B3D594227E85E71",
     "E2FCFBB880442C731BF95167C8FFD7895E337076",
     "E882F1DBD38CE3EDA7C23F04DD65071EB41342ACDF7E00DCCEC7AE52987D", 10),
    (K2, "008D493B30AE8B3C9696766CFA", "6E37A6EF546D955D34AB6059",
     "ABF21C0B02FEB88F856DF4A37381BCE3CC128517D4",
     "F32905B88A641B04B9C9FFB58CC390900F3DA12AB16DCE9E82EFA16DA62059", 10),
]

# RFC 5869 appendix A, the SHA-256 cases 1 and 3 (case 2 is checked against `cryptography`).
RFC5869 = [
    ("000102030405060708090a0b0c", "0b" * 22, "f0f1f2f3f4f5f6f7f8f9", 42,
     "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    ("", "0b" * 22, "", 42,
     "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
]


def random_cases(n=300, seed=8613):
    """Random AES-CCM-16-64-128 cases (13-byte nonce, 8-byte tag) with `cryptography`'s answers:
    (key, nonce, aad, msg, sealed). Lengths cover empty, partial and whole blocks."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        key = r.randbytes(16)
        nonce = r.randbytes(13)
        aad = r.randbytes(r.choice((0, 1, 15, 16, 17, r.randrange(0, 80))))
        msg = r.randbytes(r.choice((0, 1, 15, 16, 17, 32, r.randrange(0, 300))))
        out.append((key, nonce, aad, msg, AESCCM(key, tag_length=8).encrypt(nonce, msg, aad)))
    return out


def tampered(sealed, i):
    b = bytearray(sealed)
    b[len(b) - 1 - (i % 8)] ^= 1 << (i % 8)  # one bit of the tag
    return bytes(b)


# -- CPython ---------------------------------------------------------------------------------

@needs_cryptography
@pytest.mark.parametrize("num", range(1, 25))
def test_rfc3610_packet_vector(num):
    key, nonce, aad, msg, sealed, m = (H(v) if isinstance(v, str) else v for v in RFC3610[num - 1])
    enc = key
    assert oc.ccm_encrypt(enc, nonce, aad, msg, m) == sealed
    assert oc.ccm_decrypt(enc, nonce, aad, sealed, m) == msg
    assert AESCCM(key, tag_length=m).encrypt(nonce, msg, aad) == sealed  # the table itself is right
    bad = bytearray(sealed)
    bad[0] ^= 0x80  # ciphertext, not tag: CCM authenticates the plaintext, so this fails too
    assert oc.ccm_decrypt(enc, nonce, aad, bytes(bad), m) is None


@needs_cryptography
def test_random_cases_agree_with_cryptography_both_ways():
    cases = random_cases()
    for i, (key, nonce, aad, msg, sealed) in enumerate(cases):
        enc = key
        assert oc.ccm_encrypt(enc, nonce, aad, msg) == sealed, i
        assert oc.ccm_decrypt(enc, nonce, aad, sealed) == msg, i
        assert oc.ccm_decrypt(enc, nonce, aad, tampered(sealed, i)) is None, i
        if aad:
            assert oc.ccm_decrypt(enc, nonce, aad[:-1], sealed) is None, i
    assert sum(1 for c in cases if len(c[3]) > 32) > 20 and sum(1 for c in cases if not c[3]) > 5


@needs_cryptography
def test_other_tag_and_nonce_lengths_agree_with_cryptography():
    r = random.Random(3610)
    for m in (4, 6, 8, 10, 12, 14, 16):
        for nlen in (7, 8, 10, 12, 13):
            key, nonce = r.randbytes(16), r.randbytes(nlen)
            aad, msg = r.randbytes(r.randrange(0, 40)), r.randbytes(r.randrange(0, 70))
            sealed = AESCCM(key, tag_length=m).encrypt(nonce, msg, aad)
            enc = key
            assert oc.ccm_encrypt(enc, nonce, aad, msg, m) == sealed, (m, nlen)
            assert oc.ccm_decrypt(enc, nonce, aad, sealed, m) == msg, (m, nlen)


@needs_cryptography
def test_parameters_outside_ccm_are_refused():
    enc = bytes(16)
    for nonce, m in ((bytes(14), 8), (bytes(6), 8), (bytes(13), 7), (bytes(13), 2), (bytes(13), 18)):
        with pytest.raises(ValueError):
            oc.ccm_encrypt(enc, nonce, b"", b"x", m)
    with pytest.raises(ValueError):  # L = 2: at most 65535 bytes
        oc.ccm_encrypt(enc, bytes(13), b"", bytes(65536))
    assert oc.ccm_decrypt(enc, bytes(13), b"", bytes(7)) is None  # shorter than the tag


@needs_cryptography
def test_large_aad_uses_the_six_byte_length_form():
    key, nonce, aad, msg = bytes(range(16)), bytes(13), bytes(0xFF00 + 3), b"payload"
    sealed = AESCCM(key, tag_length=8).encrypt(nonce, msg, aad)
    assert oc.ccm_encrypt(key, nonce, aad, msg) == sealed


@needs_cryptography
def test_a_memory_error_mid_operation_leaves_the_next_ones_right(monkeypatch):
    # Each key's CBC encryptor goes on from its last output block, which oscore_crypto keeps; a
    # MemoryError within an operation must not leave that value stale (every later tag would be
    # wrong under that key). The only allocation near the encryptor is for a long message's copy.
    key, nonce, aad = bytes(range(16)), bytes(13), b"a" * 20
    ref = AESCCM(key, tag_length=8)
    assert oc.ccm_encrypt(key, nonce, aad, b"x" * 40) == ref.encrypt(nonce, b"x" * 40, aad)
    armed = [True]

    def short_of_memory(n=0):
        if armed[0] and n == 16:
            armed[0] = False
            raise MemoryError
        return bytearray(n)

    monkeypatch.setattr(oc, "bytearray", short_of_memory, raising=False)
    with pytest.raises(MemoryError):
        oc.ccm_encrypt(key, nonce, aad, b"y" * 40)
    for msg in (b"short", b"z" * 40, b"again"):
        assert oc.ccm_encrypt(key, nonce, aad, msg) == ref.encrypt(nonce, msg, aad)
        assert oc.ccm_decrypt(key, nonce, aad, ref.encrypt(nonce, msg, aad)) == msg


@needs_cryptography
def test_a_message_over_64_kib_with_a_longer_length_field():
    key, nonce = bytes(range(16)), bytes(12)   # L = 3
    msg = bytes(range(256)) * 257               # 65 792 bytes: its length needs the third byte
    assert oc.ccm_encrypt(key, nonce, b"", msg) == AESCCM(key, tag_length=8).encrypt(nonce, msg, b"")


@needs_cryptography
def test_hkdf_rfc5869_vectors():
    for salt, ikm, info, n, prk, okm in RFC5869:
        assert kb.hkdf_extract(H(salt), H(ikm)) == H(prk)
        assert kb.hkdf_expand(H(prk), H(info), n) == H(okm)
        assert kb.hkdf(H(salt), H(ikm), H(info), n) == H(okm)


@needs_cryptography
def test_hmac_and_hkdf_agree_with_the_references():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    r = random.Random(5869)
    for i in range(60):
        key = r.randbytes(r.choice((0, 1, 32, 63, 64, 65, 131)))
        msg = r.randbytes(r.randrange(0, 200))
        assert kb.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest(), i
        salt, ikm, info = r.randbytes(r.randrange(0, 80)), r.randbytes(r.randrange(1, 80)), r.randbytes(
            r.randrange(0, 80))
        n = r.choice((13, 16, 32, 33, 82, 255))
        ref = HKDF(algorithm=hashes.SHA256(), length=n, salt=salt or None, info=info).derive(ikm)
        assert kb.hkdf(salt, ikm, info, n) == ref, i


@needs_cryptography
def test_keys_taking_turns_in_both_directions_agree_with_cryptography():
    # The cipher of each direction is kept for its key (oscore_crypto.py): keys that take turns,
    # one key in both directions, and equal keys in distinct objects must all give the same answers.
    r = random.Random(8613)
    keys = [r.randbytes(16) for _ in range(3)]
    for i in range(60):
        key = keys[r.randrange(3)]
        if i % 7 == 0:
            key = bytes(bytearray(key))  # an equal key, another object
        nonce, aad, msg = r.randbytes(13), r.randbytes(r.randrange(0, 40)), r.randbytes(r.randrange(0, 70))
        sealed = AESCCM(key, tag_length=8).encrypt(nonce, msg, aad)
        assert oc.ccm_encrypt(key, nonce, aad, msg) == sealed, i
        assert oc.ccm_decrypt(key, nonce, aad, sealed) == msg, i
        assert oc.ccm_decrypt(bytes(b ^ 0x55 for b in key), nonce, aad, sealed) is None, i


# -- the same under the MicroPython VM -------------------------------------------------------

VM_RUNNER = r"""
import sys
from firmware import oscore_keys as kb  # HMAC and HKDF: boot-only
from firmware import oscore_crypto as oc

def h(s):
    return b"" if s == "-" else bytes.fromhex(s)

def x(b):
    return "NONE" if b is None else (bytes(b).hex() or "-")

for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "E":
        print(x(oc.ccm_encrypt(h(f[2]), h(f[3]), h(f[4]), h(f[5]), int(f[1]))))
    elif f[0] == "D":
        print(x(oc.ccm_decrypt(h(f[2]), h(f[3]), h(f[4]), h(f[5]), int(f[1]))))
    elif f[0] == "K":
        print(x(kb.hkdf(h(f[1]), h(f[2]), h(f[3]), int(f[4]))))
    elif f[0] == "M":
        print(x(kb.hmac_sha256(h(f[1]), h(f[2]))))
"""


def run_vm(tmp_path, lines):
    """Run the commands under `micropython`; one answer line per command."""
    cases = tmp_path / "cases.txt"
    cases.write_text("\n".join(lines) + "\n")
    script = tmp_path / "runner.py"
    script.write_text(VM_RUNNER)
    env = dict(os.environ, MICROPYPATH=ROOT + os.pathsep + ".frozen")
    p = subprocess.run([tool("micropython"), str(script), str(cases)], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout.split()
    assert len(out) == len(lines), p.stdout[-500:]
    return out


def hx(b):
    return b.hex() if b else "-"


def test_vm_rfc3610_packet_vectors(tmp_path):
    lines, want = [], []
    for key, nonce, aad, msg, sealed, m in RFC3610:
        lines.append("E %d %s %s %s %s" % (m, key, nonce, aad, msg))
        want.append(sealed.lower())
        lines.append("D %d %s %s %s %s" % (m, key, nonce, aad, sealed))
        want.append(msg.lower())
        lines.append("D %d %s %s %s %s" % (m, key, nonce, aad, tampered(H(sealed), 3).hex()))
        want.append("NONE")
    assert run_vm(tmp_path, lines) == want


@needs_cryptography
def test_vm_random_cases_agree_with_cryptography_both_ways(tmp_path):
    lines, want = [], []
    for i, (key, nonce, aad, msg, sealed) in enumerate(random_cases()):
        k, n, a = key.hex(), nonce.hex(), hx(aad)
        lines += ["E 8 %s %s %s %s" % (k, n, a, hx(msg)),
                  "D 8 %s %s %s %s" % (k, n, a, sealed.hex()),
                  "D 8 %s %s %s %s" % (k, n, a, tampered(sealed, i).hex())]
        want += [sealed.hex(), hx(msg), "NONE"]
    assert run_vm(tmp_path, lines) == want


def test_vm_hmac_and_hkdf(tmp_path):
    lines, want = [], []
    for salt, ikm, info, n, prk, okm in RFC5869:
        lines.append("K %s %s %s %d" % (salt or "-", ikm, info or "-", n))
        want.append(okm)
    r = random.Random(2104)
    for _ in range(30):
        key, msg = r.randbytes(r.choice((0, 16, 64, 65, 100))), r.randbytes(r.randrange(0, 150))
        lines.append("M %s %s" % (hx(key), hx(msg)))
        want.append(hmac.new(key, msg, hashlib.sha256).hexdigest())
    assert run_vm(tmp_path, lines) == want


def test_without_cryptography_the_cpython_checks_skip_naming_it(tmp_path):
    # Both OSCORE test files in a child pytest where `import cryptography` fails: the checks
    # that need it skip with a reason naming it; the rest (the VM's checks) still run and pass.
    import sys
    stub = tmp_path / "blocked" / "cryptography"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("blocked by the test")\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "blocked"))
    here = os.path.join(ROOT, "host_tests")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        os.path.join(here, "test_oscore_crypto.py"), os.path.join(here, "test_oscore_vectors.py"),
                        "-k", "not without_cryptography and not figures"],
                       capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    out = p.stdout
    assert p.returncode == 0, out[-3000:]
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert skipped and all("`cryptography` package is missing" in line for line in skipped), out[-3000:]
    assert "failed" not in out and " passed" in out
    for name in ("test_vm_rfc3610_packet_vectors", "test_same_checks_under_micropython"):
        assert name not in "\n".join(skipped)
