# Run under the MicroPython VM by tools/bench.py: heap figures of the real Server, printed as JSON.
# Drives Server.datagram() with a socket that only counts, so the numbers are the firmware's own.
import gc
import json
import sys

gc.collect()
_BASE = gc.mem_alloc()


class _Sock:
    def __init__(self):
        self.n = 0

    def sendto(self, data, addr):
        self.n += 1


class _Clock:
    def __init__(self):
        self.t = 1000

    def __call__(self):
        return self.t


def _rand(bits):
    return 12345 & ((1 << bits) - 1)


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


def _recvfrom_cost(pkt, n=50):
    # What the socket API itself allocates per datagram (result bytes, address, tuple): the floor.
    import socket
    if len(sys.argv) < 3:
        return None
    dest = socket.getaddrinfo("127.0.0.1", int(sys.argv[2]))[0][-1]  # a free port from bench.py
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(dest)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
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


def _defaults():
    # The defaults, with the config module freed again as the firmware does after boot.
    import firmware
    from firmware import config
    cfg = dict(config.DEFAULTS)
    del sys.modules["firmware.config"]
    del firmware.config
    return cfg


def main():
    max_obs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    cfg = _defaults()
    cfg["max_observers"] = max_obs
    cfg["log_level"] = "error"
    from firmware import log
    log.set_level("error")
    from firmware.alarm import Alarm
    from firmware.resources import AlarmResource, WellKnownCore
    from firmware.server import Server
    clock = _Clock()
    sock = _Sock()
    alarm = Alarm(clock)
    res = AlarmResource(alarm, cfg["max_payload"])
    srv = Server(sock, cfg, [res, WellKnownCore([res])], clock, _rand)
    alarm.listeners.append(lambda on, src: srv.changed(res))
    gc.collect()
    booted = gc.mem_alloc() - _BASE
    # Steady state: the same client's GETs; warm up first so every cache slot is in use.
    addr = b"\x02\x00\x30\x39\x7f\x00\x00\x01" + bytes(8)
    pkts = [_get(i & 0xFFFF, b"\x11\x22") for i in range(64)]
    for i in range(64):
        clock.t += 1
        srv.datagram(pkts[i], addr)
    n = 200
    pkts = [_get((1000 + i) & 0xFFFF, b"\x11\x22") for i in range(n)]
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for i in range(n):
        srv.datagram(pkts[i], addr)
    per_get = (gc.mem_alloc() - a) / n
    gc.enable()
    # Observers: each from its own endpoint.
    gc.collect()
    a = gc.mem_alloc()
    for k in range(max_obs):
        ep = b"\x02\x00" + bytes((0x40, k)) + b"\x7f\x00\x00\x01" + bytes(8)
        srv.datagram(_get(2000 + k, bytes((k, 1)), observe=0), ep)
    gc.collect()
    per_obs = (gc.mem_alloc() - a) / max_obs
    # One state change: notification to every observer.
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    alarm.set(True, "probe")
    srv.service()
    per_notify = (gc.mem_alloc() - a) / max_obs
    gc.enable()
    gc.collect()
    per_recv = _recvfrom_cost(pkts[0])
    print(json.dumps({"alloc_per_recvfrom": per_recv, "heap_after_boot": booted, "alloc_per_get": per_get,
                      "heap_per_observer": per_obs, "alloc_per_notification": per_notify,
                      "observers": len(srv.observers), "sent": sock.n}))


main()
