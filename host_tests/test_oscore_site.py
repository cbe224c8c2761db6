# The protection layer (firmware/protect.py) over the shim: OSCORE (RFC 8613) requests and
# responses, Echo after a boot (RFC 9175, RFC 8613 B.1.2), replay and retransmission, Observe,
# the sequence file, the access policy for unprotected requests and the config checks. The client
# side is firmware/oscore.py, which passes the RFC 8613 Appendix C vectors (test_oscore_vectors).
import json

import pytest

from host import coapmsg as coap
from harness import OSCORE_CONTEXTS, PEER, OscoreClient, _has_cryptography, oscore_server, request

pytestmark = pytest.mark.skipif(not _has_cryptography(), reason="the `cryptography` package is missing "
                                "(pip install -r requirements-dev.txt): CPython's AES block for OSCORE")

LAPTOP, PHONE = OSCORE_CONTEXTS


def send(server, sock, data, addr=PEER):
    server.datagram(data, addr)
    out = sock.take()
    assert len(out) == 1, out
    return out[0][0]


def synced(server, sock, client, mid=1, addr=PEER):
    """The first protected request after a boot: a protected 4.01 with Echo; its retry with the
    Echo value is answered. Returns the retry's answer (inner code, options, payload, PIV)."""
    data, bind = client.protect(coap.GET, mid=mid)
    r = send(server, sock, data, addr)
    assert r.code == coap.CHANGED
    code, opts, payload, piv = client.open(r, bind)
    assert code == coap.UNAUTHORIZED and coap.ECHO in opts
    assert piv is not None   # its own Partial IV: never the request's nonce for this one (B.1.2)
    data, bind = client.protect(coap.GET, mid=mid + 1, options=[(coap.ECHO, opts[coap.ECHO])])
    return client.open(send(server, sock, data, addr), bind)


@pytest.fixture
def srv(tmp_path):
    server, alarm, sock, clock, layer = oscore_server(tmp_path)
    return server, alarm, sock, clock, layer, tmp_path


def test_get_and_put_over_oscore_after_the_echo_round_trip(srv):
    server, alarm, sock, _, _, _ = srv
    c = OscoreClient(LAPTOP)
    code, opts, payload, piv = synced(server, sock, c)
    assert (code, payload) == (coap.CONTENT, b"OFF")
    assert opts[coap.CONTENT_FORMAT] == b""   # text/plain, inside
    data, bind = c.protect(coap.PUT, payload=b"ON", mid=3)
    r = send(server, sock, data)
    assert r.code == coap.CHANGED and r.mtype == coap.ACK and r.mid == 3 and r.payload != b"ON"
    assert r.opt(coap.OSCORE) == b""          # the first response reuses the request's nonce
    assert c.open(r, bind)[::2] == (coap.CHANGED, b"ON")
    assert alarm.on
    data, bind = c.protect(coap.GET, mid=4)
    assert c.open(send(server, sock, data), bind)[2] == b"ON"


def test_unprotected_put_gets_401_and_changes_nothing_reads_still_work(srv):
    server, alarm, sock, _, _, _ = srv
    r = send(server, sock, request(coap.PUT, payload=b"ON", mid=7))
    assert r.code == coap.UNAUTHORIZED and r.opt(coap.OSCORE) is None
    assert r.payload == b"OSCORE required" and r.opt(coap.MAX_AGE) == b""
    assert not alarm.on
    for code in (coap.POST, coap.DELETE):
        assert send(server, sock, request(code, payload=b"ON", mid=8 + code)).code == coap.UNAUTHORIZED
    r = send(server, sock, request(coap.GET, mid=20))
    assert (r.code, r.payload) == (coap.CONTENT, b"OFF")
    r = send(server, sock, request(coap.GET, mid=21, token=b"o", options=[(coap.OBSERVE, 0)]))
    assert r.code == coap.CONTENT and r.opt(coap.OBSERVE) is not None
    assert send(server, sock, request(coap.GET, ".well-known/core", mid=22)).code == coap.CONTENT


def test_policy_none_answers_only_discovery_unprotected(tmp_path):
    server, alarm, sock, _, _ = oscore_server(tmp_path, unprotected="none")
    assert send(server, sock, request(coap.GET, mid=1)).code == coap.UNAUTHORIZED
    assert send(server, sock, request(coap.GET, mid=2, options=[(coap.OBSERVE, 0)])).code == coap.UNAUTHORIZED
    assert len(server.observe) == 0
    assert send(server, sock, request(coap.PUT, payload=b"ON", mid=3)).code == coap.UNAUTHORIZED
    assert send(server, sock, request(coap.GET, ".well-known/core", mid=4)).code == coap.CONTENT
    c = OscoreClient(LAPTOP)
    assert synced(server, sock, c, mid=5)[::2] == (coap.CONTENT, b"OFF")   # protected: answered


def test_policy_all_keeps_unprotected_control_and_protected_still_works(tmp_path):
    server, alarm, sock, _, _ = oscore_server(tmp_path, unprotected="all")
    assert send(server, sock, request(coap.PUT, payload=b"ON", mid=1)).code == coap.CHANGED
    assert alarm.on
    assert synced(server, sock, OscoreClient(LAPTOP), mid=2)[::2] == (coap.CONTENT, b"ON")


def test_a_group_request_is_never_answered_with_an_error(srv):
    server, _, sock, _, _, _ = srv
    server.datagram(request(coap.PUT, payload=b"ON", mtype=coap.NON, mid=1), PEER, True)
    data, _ = OscoreClient(LAPTOP).protect(coap.GET, mtype=coap.NON, mid=2)
    server.datagram(data, PEER, True)
    assert sock.take() == [] and server.later == []


def test_wrong_key_or_unknown_id_is_refused_and_changes_nothing(srv):
    server, alarm, sock, _, _, _ = srv
    wrong = OscoreClient(LAPTOP, secret="ff" * 16)
    data, _ = wrong.protect(coap.PUT, payload=b"ON", mid=1)
    r = send(server, sock, data)
    assert (r.code, r.payload) == (coap.BAD_REQUEST, b"Decryption failed")
    assert r.opt(coap.OSCORE) is None and r.opt(coap.MAX_AGE) == b""
    stranger = OscoreClient(dict(LAPTOP, recipient_id="77"))
    r = send(server, sock, stranger.protect(coap.PUT, payload=b"ON", mid=2)[0])
    assert (r.code, r.payload) == (coap.UNAUTHORIZED, b"Security context not found")
    r = send(server, sock, request(coap.POST, "", mid=3, payload=b"xx", options=[(coap.OSCORE, b"\xff")]))
    assert (r.code, r.payload) == (coap.BAD_OPTION, b"Failed to decode COSE")
    assert not alarm.on
    # A flipped ciphertext bit from the right client: refused as well.
    c = OscoreClient(LAPTOP)
    synced(server, sock, c, mid=10)
    data, _ = c.protect(coap.PUT, payload=b"ON", mid=12)
    data = data[:-1] + bytes((data[-1] ^ 1,))
    assert send(server, sock, data).code == coap.BAD_REQUEST
    assert not alarm.on


def test_a_replay_under_a_new_mid_is_refused_a_retransmission_gets_the_same_bytes(srv):
    server, alarm, sock, _, _, _ = srv
    c = OscoreClient(LAPTOP)
    synced(server, sock, c)
    data, bind = c.protect(coap.PUT, payload=b"ON", mid=10)
    server.datagram(data, PEER)
    first = sock.sent[-1][0]
    sock.take()
    server.datagram(data, PEER)                        # retransmission: the cached reply
    assert sock.sent[-1][0] == first
    sock.take()
    alarm.set(False, "test")
    replay = bytearray(data)
    replay[2:4] = (11).to_bytes(2, "big")              # the same request under a new MID
    r = send(server, sock, bytes(replay))
    assert (r.code, r.payload) == (coap.UNAUTHORIZED, b"Replay detected") and r.opt(coap.OSCORE) is None
    assert not alarm.on
    # The Echo round trip of a boot cannot be replayed either.
    data, _ = c.protect(coap.GET, mid=12)
    send(server, sock, data)
    replay = bytearray(data)
    replay[2:4] = (13).to_bytes(2, "big")
    assert send(server, sock, bytes(replay)).code == coap.UNAUTHORIZED


def test_an_old_request_replayed_before_the_client_syncs_costs_one_number_not_one_each(tmp_path):
    # After a boot every context's window is unknown until its client's Echo round trip. A
    # captured request of an earlier boot, sent again under new message IDs, is answered with an
    # Echo once; the copies are replays (4.01 unprotected): they neither take the board's sequence
    # numbers nor make it write its sequence file again and again (flash wear).
    server, alarm, sock, clock, layer = oscore_server(tmp_path, oscore_seq_step=16)
    c = OscoreClient(LAPTOP)
    old, _ = c.protect(coap.PUT, payload=b"OFF", mid=1)
    answers = []
    for mid in range(1000, 1200):
        d = bytearray(old)
        d[2:4] = mid.to_bytes(2, "big")
        answers.append(send(server, sock, bytes(d)))
    assert answers[0].code == coap.CHANGED and answers[0].opt(coap.OSCORE)   # the Echo, protected
    assert {(r.code, r.payload, r.opt(coap.OSCORE)) for r in answers[1:]} == {
        (coap.UNAUTHORIZED, b"Replay detected", None)}
    assert layer.store.writes == 1 and layer.contexts[0].sequence.next == 1
    # The client itself syncs as ever with its next request.
    assert synced(server, sock, c, mid=2000)[0] == coap.CONTENT


def test_another_key_holder_cannot_take_over_or_end_an_observation(srv):
    # The phone's client, with its own valid key, spoofs the laptop's address and token: it can
    # neither make the laptop's observation its own nor cancel it.
    server, alarm, sock, clock, _, _ = srv
    laptop, phone = OscoreClient(LAPTOP), OscoreClient(PHONE)
    synced(server, sock, laptop)
    synced(server, sock, phone, addr=("127.0.0.1", 40002))
    data, bind = laptop.protect(coap.GET, mid=5, token=b"ob", observe=0)
    assert laptop.open(send(server, sock, data), bind)[1].get(coap.OBSERVE) is not None
    for mid, observe in ((6, 0), (7, 1)):   # a take-over, then a deregistration
        data, pbind = phone.protect(coap.GET, mid=mid, token=b"ob", observe=observe)
        code, opts, payload, _ = phone.open(send(server, sock, data), pbind)
        assert code == coap.CONTENT and coap.OBSERVE not in opts
    assert len(server.observe) == 1
    alarm.set(True, "test")
    server.service()
    (m, addr), = sock.take()
    assert addr == PEER and laptop.open(m, bind)[2] == b"ON"   # still the laptop's, readable by it


def test_a_block1_transfer_goes_on_only_under_the_context_that_began_it(tmp_path):
    # The laptop PUTs a body in two blocks; the phone's client (its own valid key) and a client
    # without one, both spoofing the laptop's address, try to add the second block first: 4.08,
    # and the laptop's own second block completes the transfer with the laptop's body.
    server, alarm, sock, _, _ = oscore_server(tmp_path, full=True, unprotected="all")[:5]
    laptop, phone = OscoreClient(LAPTOP), OscoreClient(PHONE)
    synced(server, sock, laptop)
    synced(server, sock, phone, addr=("127.0.0.1", 40002))
    body = b'{"on": true' + b" " * 10 + b"}"          # 22 bytes: two blocks of 16
    fake = b'{"on": fals' + b"e" + b" " * 9 + b"}"

    def block(client, num, chunk, mid):
        opts = [(coap.CONTENT_FORMAT, 50), (coap.BLOCK1, coap.block_encode(num, num == 0, 0))]
        data, bind = client.protect(coap.PUT, payload=chunk, mid=mid, options=opts)
        return client.open(send(server, sock, data), bind)[0]

    assert block(laptop, 0, body[:16], 10) == coap.CONTINUE
    # (a GET with a Block1 option begins no upload: it does not end the laptop's either)
    send(server, sock, request(coap.GET, "alarm", mid=9, options=[(coap.BLOCK1, coap.block_encode(0, True, 0))]))
    assert block(phone, 1, fake[16:], 11) == coap.REQUEST_ENTITY_INCOMPLETE
    plain = request(coap.PUT, "alarm", mid=12, payload=fake[16:],
                    options=[(coap.CONTENT_FORMAT, 50), (coap.BLOCK1, coap.block_encode(1, False, 0))])
    assert send(server, sock, plain).code == coap.REQUEST_ENTITY_INCOMPLETE
    assert not alarm.on
    assert block(laptop, 1, body[16:], 13) == coap.CHANGED
    assert alarm.on
    # Unprotected transfers (this board lets anyone write: "all") still work on their own.
    from test_blockwise_shim import put_blocks
    out = put_blocks(server, sock, b'{"on": false' + b" " * 10 + b"}", 0, mid=100)
    assert [r.code for r in out] == [coap.CONTINUE, coap.CHANGED] and not alarm.on


def test_a_flood_does_not_flush_a_protected_answer_before_its_retransmission(srv):
    # A protected request cannot be answered twice (the second time it is a replay), so its
    # answer stays cached like a state change's: spoofed requests from other sources, as many as
    # the cache has entries, do not turn the client's retransmission into "Replay detected".
    server, alarm, sock, _, _, _ = srv
    c = OscoreClient(LAPTOP)
    synced(server, sock, c)
    for mid, observe in ((100, 0), (300, None)):
        data, bind = c.protect(coap.GET, mid=mid, token=b"ob", observe=observe)
        server.datagram(data, PEER)
        (first, _), = sock.take()          # ... and the ACK is lost on the way back
        for k in range(server.dedup.capacity):
            server.datagram(request(coap.GET, ".well-known/core", mid=mid + 1 + k), ("10.0.0.%d" % (k + 1), 5683))
        sock.take()
        again = send(server, sock, data)   # the client's retransmission
        assert again == first and c.open(again, bind)[0] == coap.CONTENT


def test_an_echo_from_another_boot_does_not_sync(tmp_path):
    server, _, sock, _, layer = oscore_server(tmp_path)
    c = OscoreClient(LAPTOP)
    data, bind = c.protect(coap.GET, mid=1, options=[(coap.ECHO, b"\x00" * 8)])
    code, opts, _, _ = c.open(send(server, sock, data), bind)
    assert code == coap.UNAUTHORIZED and opts[coap.ECHO] == layer.echo != b"\x00" * 8


def _notes(sock, client, bind):
    out = []
    for m, _ in sock.take():
        code, opts, payload, piv = client.open(m, bind)
        out.append((m, code, payload, piv))
    return out


def test_observe_over_oscore_every_change_fresh_piv_rising_outer_observe(srv):
    server, alarm, sock, clock, layer, _ = srv
    c = OscoreClient(LAPTOP)
    synced(server, sock, c)
    data, bind = c.protect(coap.GET, mid=5, token=b"ob", observe=0)
    r = send(server, sock, data)
    assert r.code == coap.CONTENT and r.opt(coap.OBSERVE) is not None
    code, opts, payload, _ = c.open(r, bind)
    assert (code, payload) == (coap.CONTENT, b"OFF") and opts[coap.OBSERVE] == b""
    assert len(layer.keys) == 1   # an authenticated slot
    last_obs = coap.uint_decode(r.opt(coap.OBSERVE))
    pivs = []
    for k, state in enumerate((True, False, True, False, True, False)):
        alarm.set(state, "test")
        server.service()
        clock.advance(10)
        for m, code, payload, piv in _notes(sock, c, bind):
            if m.mtype == coap.CON:
                server.datagram(request(coap.EMPTY, "", coap.ACK, m.mid, b""), PEER)
            assert m.code == coap.CONTENT and m.token == b"ob"
            assert (code, payload) == (coap.CONTENT, b"ON" if state else b"OFF")
            assert piv is not None
            pivs.append(coap.uint_decode(piv))
            obs = coap.uint_decode(m.opt(coap.OBSERVE))
            assert obs > last_obs
            last_obs = obs
    assert len(pivs) == 6 and pivs == sorted(set(pivs))
    # Deregistered (a protected GET without Observe... here: Observe 1): the slot and its key go.
    data, bind = c.protect(coap.GET, mid=50, token=b"ob", observe=1)
    assert c.open(send(server, sock, data), bind)[0] == coap.CONTENT
    assert len(server.observe) == 0 and len(layer.keys) == 0


def test_unprotected_and_protected_observers_side_by_side(srv):
    server, alarm, sock, _, _, _ = srv
    c = OscoreClient(LAPTOP)
    synced(server, sock, c)
    data, bind = c.protect(coap.GET, mid=5, token=b"ob", observe=0)
    send(server, sock, data)
    plain = ("127.0.0.1", 40001)
    send(server, sock, request(coap.GET, token=b"pl", options=[(coap.OBSERVE, 0)], mid=6), plain)
    alarm.set(True, "test")
    server.service()
    out = {a: m for m, a in sock.take()}
    assert out[plain].payload == b"ON" and out[plain].opt(coap.OSCORE) is None
    assert out[PEER].payload != b"ON" and c.open(out[PEER], bind)[2] == b"ON"


def test_two_clients_with_their_own_contexts_both_observe(srv):
    server, alarm, sock, _, _, _ = srv
    a, b = OscoreClient(LAPTOP), OscoreClient(PHONE)
    addr_b = ("127.0.0.1", 40002)
    synced(server, sock, a)
    synced(server, sock, b, addr=addr_b)
    da, ba = a.protect(coap.GET, mid=5, token=b"a", observe=0)
    db, bb = b.protect(coap.GET, mid=5, token=b"b", observe=0)
    send(server, sock, da)
    send(server, sock, db, addr_b)
    alarm.set(True, "test")
    server.service()
    out = {addr: m for m, addr in sock.take()}
    assert a.open(out[PEER], ba)[2] == b"ON" and b.open(out[addr_b], bb)[2] == b"ON"
    with pytest.raises(AssertionError):
        a.open(out[addr_b], bb)     # the other client's notification is not readable with a's keys


def test_sequence_file_written_once_per_boot_and_per_step_numbers_never_reused(tmp_path):
    step = 16
    seen = []
    writes = []
    for boot in range(3):
        server, alarm, sock, clock, layer = oscore_server(tmp_path, oscore_seq_step=step)
        assert layer.store.writes == 0       # nothing written until a number is needed
        c = OscoreClient(LAPTOP)
        c.ctx.sequence = c.oscore.SenderSequence(10000 * boot)
        c.ctx.sequence.persisted(10000 * boot + 5000)
        code, _, _, _ = synced(server, sock, c)
        data, bind = c.protect(coap.GET, mid=5, token=b"ob", observe=0)
        send(server, sock, data)
        for k in range(40):
            alarm.set(not alarm.on, "test")
            server.service()
            for m, _ in sock.take():
                seen.append(c.open(m, bind)[3])
                if m.mtype == coap.CON:
                    server.datagram(request(coap.EMPTY, "", coap.ACK, m.mid, b""), PEER)
            clock.advance(10)
        writes.append(layer.store.writes)
        stored = json.loads((tmp_path / "oscore_seq.json").read_text())
        assert set(stored) == {layer.store.name(ctx) for ctx in layer.contexts} and len(stored) == 2
    # 41 numbers a boot (the Echo and 40 notifications) in steps of 16: one write at the first,
    # then one every 16.
    assert writes == [3, 3, 3]
    nums = [coap.uint_decode(p) for p in seen]
    assert len(nums) == len(set(nums)) == 120
    assert nums == sorted(nums)


def test_a_damaged_sequence_file_refuses_new_numbers_rather_than_reuse_them(tmp_path):
    (tmp_path / "oscore_seq.json").write_text("{broken")
    server, alarm, sock, _, _ = oscore_server(tmp_path)
    c = OscoreClient(LAPTOP)
    data, _ = c.protect(coap.GET, mid=1)
    r = send(server, sock, data)
    assert r.code == coap.SERVICE_UNAVAILABLE and r.opt(coap.OSCORE) is None


def _use_up_the_reserve(server, alarm, sock, clock, client, n=20):
    # An observation, then n changes: notifications that take the board's own sequence numbers.
    data, bind = client.protect(coap.GET, mid=5, token=b"ob", observe=0)
    send(server, sock, data)
    pivs = []
    for k in range(n):
        alarm.set(not alarm.on, "test")
        server.service()
        for m, _ in sock.take():
            if m.opt(coap.OSCORE):
                pivs.append(client.oscore.decode_option(m.opt(coap.OSCORE))[0])
            if m.mtype == coap.CON:
                server.datagram(request(coap.EMPTY, "", coap.ACK, m.mid, b""), PEER)
        clock.advance(10)
    return pivs


def test_a_write_cut_short_between_remove_and_rename_loses_no_count(tmp_path, monkeypatch):
    # Where rename() cannot replace a file (FAT), the old file is removed first; if the rename then
    # fails (or the board resets just then), only the temporary file has the count. The next boot
    # reads it: no Partial IV is used twice under one key (RFC 8613 7.2.1).
    import os
    server, alarm, sock, clock, layer = oscore_server(tmp_path, oscore_seq_step=16)
    c = OscoreClient(LAPTOP)
    synced(server, sock, c)
    before = _use_up_the_reserve(server, alarm, sock, clock, c, 10)
    real_rename = os.rename

    def fat_rename(a, b):
        if os.path.exists(b):
            raise OSError(17, "EEXIST")   # FAT: no rename over a file
        raise OSError(5, "EIO")           # and then the second one fails too

    monkeypatch.setattr(os, "rename", fat_rename)
    before += _use_up_the_reserve(server, alarm, sock, clock, c, 20)
    monkeypatch.setattr(os, "rename", real_rename)
    assert sorted(os.listdir(tmp_path)) == ["oscore_seq.json.tmp"]
    server, alarm, sock, clock, layer = oscore_server(tmp_path, oscore_seq_step=16)   # a reboot
    after = [synced(server, sock, c, mid=100)[3]] + _use_up_the_reserve(server, alarm, sock, clock, c, 5)
    nums = [coap.uint_decode(p) for p in before + after if p is not None]
    assert len(nums) == len(set(nums)) and min(coap.uint_decode(p) for p in after if p) > max(
        coap.uint_decode(p) for p in before)


@pytest.mark.parametrize("files", [{"oscore_seq.json": '{"a": "12"}'}, {"oscore_seq.json": "[3]"},
                                   {"oscore_seq.json": '{"a": -1}'}, {"oscore_seq.json.tmp": '{"a": 1'}])
def test_a_sequence_file_that_says_no_count_refuses_new_numbers(tmp_path, files):
    # A count that is not a number, or only a temporary file cut short: nothing says which numbers
    # are unused, so none is taken (5.03 unprotected) rather than start again at 0.
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    server, alarm, sock, _, _ = oscore_server(tmp_path)
    data, _ = OscoreClient(LAPTOP).protect(coap.GET, mid=1)
    r = send(server, sock, data)
    assert r.code == coap.SERVICE_UNAVAILABLE and r.opt(coap.OSCORE) is None


def test_a_temporary_file_cut_short_beside_a_good_file_is_ignored(tmp_path):
    server, alarm, sock, clock, layer = oscore_server(tmp_path, oscore_seq_step=16)
    c = OscoreClient(LAPTOP)
    synced(server, sock, c)
    (tmp_path / "oscore_seq.json.tmp").write_text('{"0011')
    server, alarm, sock, clock, layer = oscore_server(tmp_path, oscore_seq_step=16)
    assert not layer.store.broken
    assert synced(server, sock, c, mid=50)[0] == coap.CONTENT


def test_the_count_belongs_to_the_key_not_to_the_recipient_id(tmp_path):
    # Only the client's ID changed, not the secret: the board's keys and nonces are the same, so
    # its count must go on (the file names a context by what its nonces hang on).
    server, alarm, sock, clock, layer = oscore_server(tmp_path, oscore_seq_step=16)
    c = OscoreClient(LAPTOP)
    before = [synced(server, sock, c)[3]] + _use_up_the_reserve(server, alarm, sock, clock, c, 20)
    moved = dict(LAPTOP, recipient_id="07")
    server, alarm, sock, clock, layer = oscore_server(tmp_path, contexts=[moved, PHONE], oscore_seq_step=16)
    c2 = OscoreClient(moved)
    after = [synced(server, sock, c2)[3]] + _use_up_the_reserve(server, alarm, sock, clock, c2, 5)
    assert min(coap.uint_decode(p) for p in after if p) > max(coap.uint_decode(p) for p in before if p)


def test_health_says_how_open_the_board_is(tmp_path):
    from harness import ask_whole, full_server
    server, _, sock, _, _ = full_server()
    r = ask_whole(server, sock, request(coap.GET, "health", mid=1))
    assert json.loads(r.payload)["security"] == "open"


def test_retransmitted_echo_request_gets_the_same_echo_reply(srv):
    server, _, sock, _, _, _ = srv
    data, _ = OscoreClient(LAPTOP).protect(coap.GET, mid=9)
    server.datagram(data, PEER)
    server.datagram(data, PEER)
    (a, _), (b, _) = sock.sent
    assert a == b


# -- config ---------------------------------------------------------------------------------

def check(raw):
    from firmware import config
    said = []
    return config.validate(raw, said.append), said


@pytest.mark.parametrize("bad, why", [
    (dict(LAPTOP, secret="0102"), 'oscore[0] ("laptop") secret is 2 bytes; it must be 16 to 64'),
    (dict(LAPTOP, secret="xyz0" * 8), 'secret = "xyz0xyz0'),
    (dict(LAPTOP, salt="abc"), 'salt = "abc" is not hex'),
    (dict(LAPTOP, recipient_id="0102030405060708"), "recipient_id is 8 bytes; OSCORE IDs are at most 7"),
    (dict(LAPTOP, sender_id="01"), "sender_id and recipient_id are equal"),
    (dict(LAPTOP, key="x"), 'has an unknown field "key"'),
    ({k: v for k, v in LAPTOP.items() if k != "secret"}, "lacks the field secret"),
    (dict(LAPTOP, name=""), "name is not a non-empty string"),
    ("laptop", "oscore[0] is not an object"),
])
def test_a_bad_context_is_named_with_the_reason_and_left_out(bad, why):
    cfg, said = check({"oscore": [bad, PHONE]})
    assert len(said) == 1 and why in said[0] and said[0].endswith("context left out"), said
    assert cfg["oscore"] == [PHONE] and cfg["unprotected"] == "read"


def test_duplicate_recipient_ids_and_too_many_contexts():
    cfg, said = check({"oscore": [LAPTOP, dict(PHONE, recipient_id="01")]})
    assert said == ['config: oscore[1] ("phone") has the same recipient_id as "laptop": each client '
                    'needs its own; context left out']
    many = [dict(LAPTOP, name="c%d" % i, recipient_id="%02x" % (i + 1), secret="%02x" % i * 16) for i in range(5)]
    cfg, said = check({"oscore": many})
    assert len(cfg["oscore"]) == 4 and "one more than oscore_max_contexts = 4" in said[0]
    cfg, said = check({"oscore": many, "oscore_max_contexts": 5})
    assert len(cfg["oscore"]) == 5 and said == []


def test_two_contexts_with_one_secret_salt_and_sender_id_are_refused():
    # The board's sender key and nonces derive from the secret, the salt and its own ID: two such
    # contexts would send under one key, each counting from its own number (nonce reuse).
    cfg, said = check({"oscore": [LAPTOP, dict(LAPTOP, name="twin", recipient_id="07")]})
    assert cfg["oscore"] == [LAPTOP] and said == [
        'config: oscore[1] ("twin") has the same secret, salt and sender_id as "laptop": each client '
        'needs its own secret; context left out']
    other_salt = dict(LAPTOP, name="twin", recipient_id="07", salt="00")
    other_id = dict(LAPTOP, name="twin", recipient_id="07", sender_id="05")
    for fine in (other_salt, other_id):
        assert check({"oscore": [LAPTOP, fine]})[1] == []


def test_the_policy_defaults_and_needs_a_context():
    assert check({})[0]["unprotected"] is None                       # "all": nothing else possible
    assert check({"oscore": [LAPTOP]})[0]["unprotected"] == "read"
    cfg, said = check({"unprotected": "none"})
    assert cfg["unprotected"] is None and "needs an oscore context" in said[0]
    cfg, said = check({"oscore": [LAPTOP], "unprotected": "some"})
    assert cfg["unprotected"] == "read" and said[0].startswith('config: unprotected = "some" is not ')
