# Heap figures of the real firmware, printed as one line of JSON. Run by tools/bench.py under
# the MicroPython unix port (64-bit objects) and, through tools/heap32.mjs, under the
# WebAssembly port (32-bit objects, like an ESP32's), with the same .mpy build.
#
# The firmware boots through its own start.main(), as main.py does, with a config.json written
# here and a fake `socket` module (the WebAssembly port has none, and no datagram may leave this
# process). Then datagrams are fed to the message layer's datagram(), found as `app.endpoint`
# or `app.server`, whichever the firmware has.
#
# argv: [max_observers [recv_port [address_form [oscore_contexts]]]]
#   recv_port: a free loopback port, to measure what the real recvfrom() allocates (unix port
#     only; "" or absent: skipped).
#   address_form: "bytes" (what the unix port's recvfrom gives: a 16-byte struct sockaddr, as
#     the simulator sees) or "tuple" (what a board's gives: ("192.168.1.x", port)).
#   oscore_contexts: that many OSCORE security contexts in the config (default 0). The
#     WebAssembly port has no `cryptolib`: a stand-in that only holds its key is put in its place,
#     which is enough for the boot (no cipher is made before the first protected message).
import gc
import json
import sys

try:
    import socket as _real_socket
except ImportError:
    _real_socket = None  # the WebAssembly port has no socket module


from host.probe_socket import Socket, install

_SENT = Socket.sent   # what the firmware sent, from any of its sockets: what a client would see


class _NoIOQueue:
    def queue_read(self, sock):
        raise OSError("no IO queue on this port")


_args = sys.argv[1:] + ["", "", "", ""]
_MAX_OBS = int(_args[0] or 8)
_RECV_PORT = int(_args[1]) if _args[1] else None
_TUPLE = _args[2] == "tuple"
_N_OSCORE = int(_args[3] or 0)


class _StandInAes:
    # cryptolib.aes where the VM has none (see oscore_contexts above): never encrypts.
    def __init__(self, key, mode, iv=None):
        self.key = key

    def encrypt(self, data, out=None):
        raise OSError("no cryptolib on this VM")


def _oscore_config():
    # oscore_contexts contexts, as `make keys` would write them, one client each.
    return [{"name": "c%d" % k, "secret": "%02x" % (k + 1) * 16, "sender_id": "",
             "recipient_id": "%02x" % (k + 1)} for k in range(_N_OSCORE)]


def _addr(k):
    # The k-th client endpoint, in the form the VM's recvfrom would give it: each its own host
    # (the firmware holds at most 4 observers per address).
    port = 40000 + k
    if _TUPLE:
        return ("192.168.1.%d" % (10 + k % 200), port)
    return bytes((2, 0, port >> 8, port & 0xFF, 127, 0, k >> 8, 1 + k % 250)) + bytes(8)  # a host each


def _get(mid, token, observe=-1):
    # CON GET /alarm, hand-encoded so this script needs no encoder.
    tkl = len(token)
    out = bytearray((0x40 | tkl, 0x01, mid >> 8, mid & 0xFF)) + token
    if observe >= 0:
        out += bytes((0x61, observe)) if observe else b"\x60"
        out += b"\x55alarm"   # Uri-Path (11) after Observe (6): delta 5
    else:
        out += b"\xb5alarm"
    return bytes(out)


# (code, options and payload) of requests that load every first-use module: GET /alarm as
# JSON (Accept 50) and as CBOR (60), GET /health, GET /.well-known/core?rt=alarm, PUT /alarm
# with a JSON body (Content-Format 50).
_FIRST_USE = (
    (0x01, b"\xb5alarm\x61\x32"),
    (0x01, b"\xb5alarm\x61\x3c"),
    (0x01, b"\xb6health\x61\x32"),
    (0x01, b"\xbb.well-known\x04core\x48rt=alarm"),
    (0x03, b"\xb5alarm\x11\x32\xff{\"on\":false}"),
)


def _observing(reply):
    # True if a 2.05 reply carries the Observe option: the client was registered.
    if len(reply) < 4 or reply[1] != 0x45:
        return False
    i = 4 + (reply[0] & 15)
    num = 0
    while i < len(reply) and reply[i] != 0xFF:
        delta, length = reply[i] >> 4, reply[i] & 15
        i += 1
        if delta == 13:
            delta = reply[i] + 13
            i += 1
        if length == 13:
            length = reply[i] + 13
            i += 1
        num += delta
        if num == 6:
            return True
        i += length
    return False


def _recvfrom_cost(pkt, n=50):
    # What the socket API itself allocates per datagram (result bytes, address, tuple): the floor.
    if _real_socket is None or _RECV_PORT is None:
        return None
    s = _real_socket
    dest = s.getaddrinfo("127.0.0.1", _RECV_PORT)[0][-1]
    rx = s.socket(s.AF_INET, s.SOCK_DGRAM)
    rx.bind(dest)
    tx = s.socket(s.AF_INET, s.SOCK_DGRAM)
    total = 0
    for _ in range(n):
        tx.sendto(pkt, dest)
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        rx.recvfrom(256)
        total += gc.mem_alloc() - a
        gc.enable()
    rx.close()
    tx.close()
    return total / n


_APPS = []     # the App, caught as it is built (start.main() only hands back its serve method)
_INIT = None


def _catch(self, *args, **kwargs):
    _APPS.append(self)
    _INIT(self, *args, **kwargs)


def _phases():
    # Each `yield` asks for a collection before the next phase, which starts by reading the
    # heap. See _STEP below for why the phases are separate.
    global _INIT
    with open("config.json", "w") as f:
        json.dump({"bind": "127.0.0.1", "port": 5683, "log_level": "error",
                   "max_observers": _MAX_OBS, "oscore": _oscore_config()}, f)
    install()
    try:
        import cryptolib
    except ImportError:
        class cryptolib:   # a module-like stand-in: what `from cryptolib import aes` needs
            aes = _StandInAes
        sys.modules["cryptolib"] = cryptolib
    cryptolib = None
    import asyncio.core
    if not hasattr(asyncio.core, "_io_queue"):
        # The WebAssembly port's asyncio runs on the JavaScript event loop and has no IO queue,
        # which compat checks for at import. Nothing here waits on a socket: a stand-in will do.
        asyncio.core._io_queue = _NoIOQueue()
    _APPS.append(None)
    _APPS.pop()   # room for one entry, allocated before the baseline
    yield
    base = gc.mem_alloc()
    from firmware import app as app_module
    _INIT = app_module.App.__init__
    app_module.App.__init__ = _catch
    del app_module
    from firmware import start
    serve = start.main()
    del start  # as main.py does: start.py is boot-only code and frees itself
    app = _APPS[0]
    ep = getattr(app, "endpoint", None) or app.server
    yield
    booted = gc.mem_alloc() - base
    # One GET, as the running-firmware figure does before it reads the heap.
    ep.datagram(_get(1, b"\x01"), _addr(0))
    answered = _SENT[-1][1] == 0x45 if _SENT else False
    yield
    after_get = gc.mem_alloc() - base
    # Steady state: one client's GETs; warm up first so every cache slot is in use.
    Socket.keep = False
    addr = _addr(0)
    pkts = [_get(i & 0xFFFF, b"\x11\x22") for i in range(64)]
    for p in pkts:
        ep.datagram(p, addr)
    n = 200
    pkts = [_get((1000 + i) & 0xFFFF, b"\x11\x22") for i in range(n)]
    yield
    gc.disable()
    a = gc.mem_alloc()
    for p in pkts:
        ep.datagram(p, addr)
    per_get = (gc.mem_alloc() - a) / n
    gc.enable()
    # Observers, each from its own endpoint. The datagrams are made first; each address is made
    # inside the measurement, as recvfrom() would make it, so what stays is what the firmware
    # keeps, the address object it holds on to included.
    reqs = [_get(2000 + k, bytes((k, 1)), observe=0) for k in range(_MAX_OBS)]
    _SENT[:] = []
    Socket.keep = True
    yield
    a = gc.mem_alloc()
    for k in range(_MAX_OBS):
        ep.datagram(reqs[k], _addr(1 + k))
    reqs = None
    yield
    per_obs_total = gc.mem_alloc() - a
    registered = len([r for r in _SENT if _observing(r)])
    # One state change: a notification to every observer.
    _SENT[:] = []
    Socket.keep = False
    alarm = getattr(app, "alarm", None)
    yield
    per_notify = None
    if alarm is not None:
        gc.disable()
        a = gc.mem_alloc()
        alarm.set(True, "probe")
        ep.service()
        per_notify = (gc.mem_alloc() - a) / max(registered, 1)
        gc.enable()
    # Every first-use module loaded: JSON and CBOR, /health, a filtered discovery, a JSON PUT.
    pkt = pkts[0]
    pkts = None
    _SENT[:] = []
    Socket.keep = True
    for i, req in enumerate(_FIRST_USE):
        ep.datagram(bytes((0x41, req[0], 0x0F, i, 0x33)) + req[1], _addr(0))
    full_ok = len([r for r in _SENT if r[1] >> 5 == 2])
    Socket.keep = False
    yield
    full = gc.mem_alloc() - base
    per_recv = _recvfrom_cost(pkt)
    print(json.dumps({
        "vm": "%s %d-bit" % (sys.platform, 64 if sys.maxsize > 2 ** 32 else 32),
        "oscore_contexts": _N_OSCORE,
        "version": ".".join(str(v) for v in sys.implementation.version[:3]),
        "address_form": "tuple" if _TUPLE else "bytes",
        "heap_after_boot": booted, "heap_after_get": after_get, "answered": answered,
        "alloc_per_get": per_get, "observers": registered,
        "heap_per_observer": per_obs_total / registered if registered else None,
        "alloc_per_notification": per_notify, "alloc_per_recvfrom": per_recv,
        "heap_full_features": full,  # the observers and every first-use module
        "full_features_answered": "%d/%d" % (full_ok, len(_FIRST_USE))}))
    del serve


_PHASES = _phases()


def _STEP():
    # One phase; False when all are done. The unix port (and a board) collects in place, so the
    # loop below runs every phase here. The WebAssembly port only notes a gc.collect() and
    # collects once control is back at the top level (it cannot scan its own C stack), so
    # there tools/heap32.mjs calls _STEP() from the top level, once per phase.
    for _ in _PHASES:
        gc.collect()
        return True
    return False


def _collects_in_place():
    junk = bytearray(4096)
    gc.collect()
    a = gc.mem_alloc()
    junk = None
    gc.collect()
    return gc.mem_alloc() < a


if _collects_in_place():
    while _STEP():
        pass
