# OSCORE figures of the real firmware under the MicroPython VM, printed as one line of JSON
# (tools/bench.py runs it; `make bench` shows the figures):
#
#   MICROPYPATH=<board build> micropython tools/oscore_probe.py CONTEXTS [N]
#
# The firmware boots through its own start.main() with a config.json of CONTEXTS security
# contexts, written here, and a fake `socket` module (nothing leaves this process). Printed:
#   heap_after_boot  bytes allocated by the boot (after a collection)
# and with CONTEXTS > 0, after an Echo round trip, N requests of each kind fed to the message
# layer's datagram() in alternating batches (on a shared machine the absolute figures drift, the
# ratio much less), each with a new message ID so that each is served in full:
#   us_plain_get      microseconds per unprotected CON GET /alarm
#   us_protected_get  microseconds per OSCORE-protected CON GET /alarm (verify, decrypt,
#                     the site, encrypt), its requests made beforehand by oscore.py
#   ratio             us_protected_get / us_plain_get
import gc
import json
import sys
import time

_N_CTX = int(sys.argv[1]) if len(sys.argv) > 1 else 4
_N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
_BATCH = 100
from host.probe_socket import Socket, install

_SENT = Socket.sent   # what the firmware sent


def _secret(k):
    return bytes((k + 1,)) * 16


_APPS = []
_INIT = None


def _catch(self, *args, **kwargs):
    _APPS.append(self)
    _INIT(self, *args, **kwargs)


def _get(mid):
    return bytes((0x41, 0x01, mid >> 8, mid & 0xFF, 0x07, 0xB5)) + b"alarm"


def _protected(client, mid, extra=()):
    from host import oscore_client as oscore
    opts = [(11, b"alarm")] + list(extra)
    opt, ct, bind = client.protect_request(oscore.encode_plaintext(0x01, opts))
    opt = bytes(opt)
    out = bytes((0x41, 0x02, mid >> 8, mid & 0xFF, 0x07, 0x90 | len(opt))) + opt + b"\xff" + ct
    return out, bind


def _open(client, reply, bind):
    from host import oscore_client as oscore
    from firmware.coap import Reader
    r = Reader().load(reply)
    piv = oscore.decode_option(r.opt(9))[0]
    return oscore.decode_plaintext(client.unprotect_response(piv, r.payload, bind))


def main():
    global _INIT
    cfg = {"bind": "127.0.0.1", "port": 5683, "log_level": "error"}
    cfg["oscore"] = [{"name": "c%d" % k, "secret": _secret(k).hex(), "sender_id": "",
                      "recipient_id": "%02x" % (k + 1)} for k in range(_N_CTX)]
    with open("config.json", "w") as f:
        json.dump(cfg, f)
    install()
    _APPS.append(None)
    _APPS.pop()
    gc.collect()
    base = gc.mem_alloc()
    from firmware import app as app_module
    _INIT = app_module.App.__init__
    app_module.App.__init__ = _catch
    del app_module
    from firmware import start
    start.main()
    del start
    ep = _APPS[0].endpoint
    gc.collect()
    out = {"contexts": _N_CTX, "heap_after_boot": gc.mem_alloc() - base}
    if _N_CTX:
        from host import oscore_client as oscore
        addr = ("127.0.0.1", 40000)
        client = oscore.SecurityContext(_secret(0), b"\x01", b"", replay=oscore.ReplayWindow(known=True))
        client.sequence.persisted(1 << 30)
        data, bind = _protected(client, 1)
        ep.datagram(data, addr)
        code, opts, _ = _open(client, _SENT[-1], bind)
        echo = [v for n, v in opts if n == 252]
        data, bind = _protected(client, 2, [(252, echo[0])])
        ep.datagram(data, addr)
        code, _, body = _open(client, _SENT[-1], bind)
        if code != 0x45:
            raise SystemExit("the protected GET after the Echo round trip got %x" % code)
        ticks_us, ticks_diff = time.ticks_us, time.ticks_diff
        mid = 100
        plain = prot = 0
        done = 0
        while done < _N:
            reqs = []
            for k in range(_BATCH):
                reqs.append(_protected(client, (mid + k) & 0xFFFF)[0])
            gets = [_get((mid + _BATCH + k) & 0xFFFF) for k in range(_BATCH)]
            mid += 2 * _BATCH
            del _SENT[:]
            gc.collect()
            t = ticks_us()
            for d in gets:
                ep.datagram(d, addr)
            plain += ticks_diff(ticks_us(), t)
            gc.collect()
            t = ticks_us()
            for d in reqs:
                ep.datagram(d, addr)
            prot += ticks_diff(ticks_us(), t)
            if len(_SENT) != 2 * _BATCH or any(r[1] != 0x45 and r[1] != 0x44 for r in _SENT):
                raise SystemExit("a request went unanswered or failed")
            done += _BATCH
        out["us_plain_get"] = round(plain / done, 1)
        out["us_protected_get"] = round(prot / done, 1)
        out["ratio"] = round(prot / plain, 2)
    print(json.dumps(out))


main()
