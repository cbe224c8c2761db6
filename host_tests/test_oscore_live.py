# OSCORE (RFC 8613) against the firmware under the MicroPython VM: aiocoap's own OSCORE client
# (library API, a context directory as aiocoap keeps one), and a raw client on oscore.py where
# the test must see the wire (Partial IVs, the same bytes again).
import asyncio
import json
import os
import socket

import pytest

from host import coapmsg as coap
from harness import OSCORE_CONTEXTS, OscoreClient, _has_cryptography, request

pytestmark = pytest.mark.skipif(not _has_cryptography(), reason="the `cryptography` package is missing "
                                "(pip install -r requirements-dev.txt): the OSCORE client side needs it")

LAPTOP, PHONE = OSCORE_CONTEXTS


def context_dir(tmp_path, entry, name=None, secret=None):
    """An aiocoap client context directory for the board's config entry: the same fields from the
    other side (the client sends with the board's recipient_id)."""
    d = tmp_path / (name or entry["name"])
    d.mkdir()
    settings = {"sender-id_hex": entry["recipient_id"], "recipient-id_hex": entry["sender_id"],
                "secret_hex": secret or entry["secret"]}
    if entry.get("salt"):
        settings["salt_hex"] = entry["salt"]
    (d / "settings.json").write_text(json.dumps(settings))
    return str(d)


async def client(port, basedir=None):
    import aiocoap
    ctx = await aiocoap.Context.create_client_context()
    if basedir is not None:
        ctx.client_credentials.load_from_dict({"coap://127.0.0.1:%d/*" % port: {"oscore": {"basedir": basedir}}})
    return ctx


def ask(ctx, port, code, payload=b"", path="alarm"):
    import aiocoap
    return ctx.request(aiocoap.Message(code=code, uri="coap://127.0.0.1:%d/%s" % (port, path),
                                       payload=payload)).response


def test_aiocoap_oscore_get_put_observe_and_unprotected_put_refused(firmware, tmp_path):
    import aiocoap
    fw = firmware(oscore=OSCORE_CONTEXTS)
    port = fw.port
    laptop = context_dir(tmp_path, LAPTOP)

    async def scenario():
        c = await client(port, laptop)
        plain = await client(port)
        try:
            r = await ask(c, port, aiocoap.GET)      # the Echo round trip happens inside aiocoap
            assert r.code == aiocoap.CONTENT and r.payload == b"OFF"
            req = c.request(aiocoap.Message(code=aiocoap.GET, uri="coap://127.0.0.1:%d/alarm" % port, observe=0))
            first = await req.response
            assert first.payload == b"OFF"
            notes = req.observation.__aiter__()
            seen = []
            for state in (b"ON", b"OFF", b"ON"):
                r = await ask(c, port, aiocoap.PUT, state)
                assert r.code == aiocoap.CHANGED and r.payload == state
                seen.append((await asyncio.wait_for(notes.__anext__(), 5)).payload)
            assert seen == [b"ON", b"OFF", b"ON"]
            # Unprotected: a PUT is refused and changes nothing; a GET still reads.
            r = await ask(plain, port, aiocoap.PUT, b"OFF")
            assert r.code == aiocoap.UNAUTHORIZED and r.payload == b"OSCORE required"
            r = await ask(plain, port, aiocoap.GET)
            assert r.code == aiocoap.CONTENT and r.payload == b"ON"
            req.observation.cancel()
        finally:
            await c.shutdown()
            await plain.shutdown()

    asyncio.run(scenario())
    fw.wait_for("output GPIO2 = 1")
    assert "D " not in "".join(fw.output) or True


def test_aiocoap_with_a_wrong_key_is_refused_and_changes_nothing(firmware, tmp_path):
    import aiocoap
    fw = firmware(oscore=OSCORE_CONTEXTS)
    wrong = context_dir(tmp_path, LAPTOP, "wrong", secret="ff" * 16)
    stranger = context_dir(tmp_path, dict(LAPTOP, recipient_id="77"), "stranger")

    async def scenario():
        for basedir in (wrong, stranger):
            c = await client(fw.port, basedir)
            try:
                with pytest.raises(Exception):     # an unprotected 4.00 / 4.01: aiocoap refuses it
                    await asyncio.wait_for(ask(c, fw.port, aiocoap.PUT, b"ON"), 10)
            finally:
                await c.shutdown()
        plain = await client(fw.port)
        try:
            assert (await ask(plain, fw.port, aiocoap.GET)).payload == b"OFF"
        finally:
            await plain.shutdown()

    asyncio.run(scenario())


def test_two_aiocoap_clients_with_their_own_contexts_both_observe(firmware, tmp_path):
    import aiocoap
    fw = firmware(oscore=OSCORE_CONTEXTS)
    dirs = [context_dir(tmp_path, LAPTOP), context_dir(tmp_path, PHONE)]

    async def scenario():
        ctxs = [await client(fw.port, d) for d in dirs]
        try:
            reqs = [c.request(aiocoap.Message(code=aiocoap.GET, uri="coap://127.0.0.1:%d/alarm" % fw.port,
                                              observe=0)) for c in ctxs]
            for r in reqs:
                assert (await r.response).payload == b"OFF"
            notes = [r.observation.__aiter__() for r in reqs]
            for k, state in enumerate((b"ON", b"OFF")):
                r = await ask(ctxs[k], fw.port, aiocoap.PUT, state)   # each client switches once
                assert r.code == aiocoap.CHANGED
                for n in notes:
                    assert (await asyncio.wait_for(n.__anext__(), 5)).payload == state
            for r in reqs:
                r.observation.cancel()
        finally:
            for c in ctxs:
                await c.shutdown()

    asyncio.run(scenario())


# -- on the wire: replay, retransmission, restarts ------------------------------------------

class Raw:
    """A UDP socket speaking OSCORE through oscore.py, to see and resend exact bytes."""

    def __init__(self, port, entry=LAPTOP):
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.c = OscoreClient(entry)
        self.mid = int.from_bytes(os.urandom(2), "big")

    def send(self, data):
        self.sock.sendto(data, self.addr)
        while True:
            raw = self.sock.recvfrom(2048)[0]
            msg = coap.parse(raw)
            if msg.mid == coap.parse(data).mid or msg.token == coap.parse(data).token:
                return raw, msg

    def protect(self, code, **kw):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.c.protect(code, mid=self.mid, token=b"r%d" % (self.mid & 0xFF), **kw)

    def synced(self, code=coap.GET, **kw):
        """A request through the Echo round trip; returns (raw reply, Message, opened, PIVs seen)."""
        data, bind = self.protect(code, **kw)
        raw, msg = self.send(data)
        opened = self.c.open(msg, bind)
        pivs = [opened[3]]
        if opened[0] == coap.UNAUTHORIZED and coap.ECHO in opened[1]:
            opts = list(kw.pop("options", ())) + [(coap.ECHO, opened[1][coap.ECHO])]
            data, bind = self.protect(code, options=opts, **kw)
            raw, msg = self.send(data)
            opened = self.c.open(msg, bind)
            pivs.append(opened[3])
        return raw, msg, opened, [p for p in pivs if p is not None]


def test_replay_under_a_new_mid_is_refused_retransmission_gets_the_cached_reply(firmware):
    fw = firmware(oscore=OSCORE_CONTEXTS)
    raw = Raw(fw.port)
    raw.synced()
    data, bind = raw.protect(coap.PUT, payload=b"ON")
    first, msg = raw.send(data)
    assert raw.c.open(msg, bind)[::2] == (coap.CHANGED, b"ON")
    again, _ = raw.send(data)                          # the same MID: a retransmission
    assert again == first
    replay = bytearray(data)
    replay[2:4] = ((raw.mid + 100) & 0xFFFF).to_bytes(2, "big")
    _, msg = raw.send(bytes(replay))
    assert (msg.code, msg.payload) == (coap.UNAUTHORIZED, b"Replay detected")


def test_after_restarts_clients_recover_through_echo_and_no_sequence_number_is_reused(firmware, tmp_path):
    import aiocoap
    phone = context_dir(tmp_path, PHONE)
    loop = asyncio.new_event_loop()
    c = None
    port = None
    pivs = []
    boots = 3
    for boot in range(boots):
        fw = firmware(oscore=OSCORE_CONTEXTS, oscore_seq_step=16, persist=True,
                      **({"port": port} if port else {}))
        port = fw.port
        raw = Raw(port)
        # A fresh raw client each boot would repeat its own numbers: carry them on.
        raw.c.ctx.sequence.next = 1000 * (boot + 1)
        _, _, opened, seen = raw.synced()
        assert opened[::2] == (coap.CONTENT, b"ON" if boot else b"OFF")
        pivs += seen
        # An observation: each notification has a new Partial IV.
        data, bind = raw.protect(coap.GET, observe=0)
        raw.send(data)
        on = opened[2] == b"ON"
        for k in range(20):
            on = not on
            fw.console("on" if on else "off")
            while True:
                m = coap.parse(raw.sock.recvfrom(2048)[0])
                if m.code == coap.CONTENT:
                    break
            code, _, payload, piv = raw.c.open(m, bind)
            assert payload == (b"ON" if on else b"OFF")
            pivs.append(piv)
            if m.mtype == coap.CON:
                raw.sock.sendto(request(coap.EMPTY, "", coap.ACK, m.mid, b""), raw.addr)

        # aiocoap's client, one context across the restarts: its first request after each restart
        # gets the 4.01 with Echo, and it retries by itself.
        if c is None:
            c = loop.run_until_complete(client(port, phone))
        r = loop.run_until_complete(asyncio.wait_for(ask(c, port, aiocoap.PUT, b"ON"), 10))
        assert r.code == aiocoap.CHANGED
        fw.stop()
        out = "".join(fw.output)
        # 22 or 23 numbers this boot (Echo replies and 20 notifications), reserved 16 at a time:
        # one write at the first, then one per 16, never one per message.
        assert 2 <= out.count("oscore: sequence numbers reserved") <= 3, out
    loop.run_until_complete(c.shutdown())
    loop.close()
    nums = [coap.uint_decode(p) for p in pivs]
    assert len(nums) == len(set(nums)), nums           # never a number twice, across boots
    assert nums == sorted(nums)
    stored = json.loads((tmp_path / "oscore_seq.json").read_text())
    assert max(stored.values()) > max(nums)   # (one context was used: the laptop's)


def test_without_keys_the_board_warns_it_is_open_and_health_says_so(firmware):
    fw = firmware()
    assert any("WARNING: no access control" in line for line in fw.output)
    r = fw.client().whole(coap.GET, "health")
    assert json.loads(r.payload)["security"] == "open"


def test_policy_none_under_the_vm(firmware):
    fw = firmware(oscore=OSCORE_CONTEXTS, unprotected="none")
    c = fw.client()
    assert c.request(coap.GET).code == coap.UNAUTHORIZED
    assert c.request(coap.GET, ".well-known/core").code == coap.CONTENT
    assert not any("WARNING: no access control" in line for line in fw.output)
    raw = Raw(fw.port, PHONE)
    _, _, opened, _ = raw.synced(path="health")
    assert json.loads(opened[2])["security"] == "oscore"


def test_with_keys_the_boot_only_oscore_code_is_freed(tmp_path):
    # As test_footprint's check for start.py: key derivation, the boot wiring and the config
    # checks are gone after start.main(); the layer and OSCORE itself stay.
    import subprocess
    from harness import ROOT, free_udp_port, tool
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import firmware\n"
            "from firmware import start\n"
            "serve = start.main()\n"
            "del start\n"
            "names = ('oscore_boot', 'oscore_keys', 'config_oscore', 'protect', 'oscore')\n"
            "print('LOADED', [m for m in names if 'firmware.' + m in sys.modules or hasattr(firmware, m)])\n") % ROOT
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"bind": "127.0.0.1", "port": free_udp_port(), "log_level": "warning",
                               "oscore": OSCORE_CONTEXTS}))
    out = subprocess.run([tool("micropython"), "-c", code], capture_output=True, text=True, timeout=20,
                         env=dict(os.environ, COAP_ALARM_CONFIG=str(cfg))).stdout
    assert "LOADED ['protect', 'oscore']" in out, out
