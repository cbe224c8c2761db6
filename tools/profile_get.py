# Where the time of one CON GET /alarm goes under the MicroPython VM (issue 8, "Profile first").
#
#   MICROPYPATH=<board build or repository root> micropython tools/profile_get.py [N]
#   (or: python tools/bench.py --profile, which sets that up)
#
# The firmware boots through its own start.main() with a fake socket (nothing leaves this
# process); then N canned GETs, each with a new message ID (so every one is a dedup miss and
# is served in full, as in the bench's closed loop), go to the message layer's datagram(),
# found as `app.endpoint` or `app.server`. Prints microseconds per GET:
#   1. datagram() alone, nothing wrapped;
#   2. the same calls with the parts below wrapped in timers, each part's own time per GET
#      (the timer's own cost, measured on an empty function, taken off), in the order a GET
#      meets them; "rest" is what datagram() spends outside them. Plain and timed GETs run in
#      alternate batches: on a shared machine the absolute figures drift by 2-3x between
#      runs, the shares (%) much less;
#   3. datagram() for a CoAP ping, a retransmitted GET, a GET of an unknown path, a NON GET
#      and a new CON GET, nothing wrapped: the differences are what the message layer, the
#      routing-to-handler path and keeping a reply for retransmissions cost;
#   4. the socket calls the receive loop adds around datagram(), on a real loopback socket.
# It stops with an error if any GET went unanswered (the figures would time an error path).
# Parts are looked up by name: the ones this firmware does not have are listed as absent.
import gc
import sys
import time

ticks_us = time.ticks_us
ticks_diff = time.ticks_diff
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000

try:
    import socket as _real_socket
except ImportError:
    _real_socket = None

from host.probe_socket import Socket, install


_APPS = []
_INIT = None


def _catch(self, *args, **kwargs):
    _APPS.append(self)
    _INIT(self, *args, **kwargs)


def boot():
    global _INIT
    import json
    with open("config.json", "w") as f:
        json.dump({"bind": "127.0.0.1", "port": 5683, "log_level": "error"}, f)
    Socket.keep = False   # count the answers, copy none (no allocation but the firmware's)
    install()
    from firmware import app as app_module
    _INIT = app_module.App.__init__
    app_module.App.__init__ = _catch
    from firmware import start
    serve = start.main()
    app = _APPS[0]
    return app, getattr(app, "endpoint", None) or app.server, serve


def get(mid):
    # CON GET /alarm, token = MID (2 bytes), as tools/bench.py sends it.
    return bytes((0x42, 0x01, mid >> 8, mid & 0xFF, mid >> 8, mid & 0xFF, 0xB5)) + b"alarm"


ADDR = bytes((2, 0, 0x9C, 0x40, 127, 0, 0, 1)) + bytes(8)   # what the unix port's recvfrom gives


def run(ep, first_mid, n, addr=ADDR, batch=250):
    """(us per GET as it is, us per GET with the parts timed), n GETs each, from alternating
    batches, so that both see the same machine (a shared machine's speed drifts by the
    second). The collector is off inside a batch and runs between them: the timers allocate
    (argument tuples), and a collection landing inside a part would be charged to it."""
    datagram = ep.datagram
    us = [0, 0]
    mid = first_mid
    for _ in range(0, n, batch):
        for timed in (0, 1):
            timers_on(timed)
            chunk = [get((mid + k) & 0xFFFF) for k in range(batch)]
            mid += batch
            gc.collect()
            gc.disable()
            t0 = ticks_us()
            for p in chunk:
                datagram(p, addr)
            us[timed] += ticks_diff(ticks_us(), t0)
            gc.enable()
            chunk = None
    timers_on(False)
    return us[0] / n, us[1] / n


def by_kind(ep, n, batch=250):
    """us per datagram() for kinds of message, each new message ID unless said otherwise. The
    differences between them are what a layer or a step costs, with no timer in the way."""
    datagram = ep.datagram
    dup = get(3)
    datagram(dup, ADDR)   # in the cache from now on

    def non(k):   # the same GET, non-confirmable: answered NON, no reply kept for retransmissions
        return bytes((0x52,)) + get(k)[1:]

    def missing(k):   # GET /alarx: an unknown path, 4.04 with a diagnostic
        return get(k)[:-1] + b"x"

    kinds = (("ping (empty CON -> RST)", lambda k: bytes((0x40, 0, k >> 8, k & 0xFF))),
             ("retransmitted GET (dedup hit)", lambda k: dup),
             ("GET of an unknown path (4.04)", missing),
             ("NON GET (no reply kept)", non),
             ("new CON GET (served in full)", get))
    us = [0] * len(kinds)
    mid = 40000
    for _ in range(0, n, batch):
        for i, (name, make) in enumerate(kinds):
            chunk = [make((mid + k) & 0xFFFF) for k in range(batch)]
            mid += batch
            gc.collect()
            gc.disable()
            t0 = ticks_us()
            for p in chunk:
                datagram(p, ADDR)
            us[i] += ticks_diff(ticks_us(), t0)
            gc.enable()
    return [(kinds[i][0], us[i] / n) for i in range(len(kinds))]


_DEPTH = [0, 0]   # timed calls open now; timed calls made inside the outermost one


class Timer:
    # Wraps obj.name (an instance attribute shadows the class's method) and adds up the time
    # spent inside it, per part. Only the outermost timed call counts: a part that calls
    # another (opt() calling find(), a handler reading options) is charged to the outer one,
    # with the timer cost of the calls nested in it.
    def __init__(self, part):
        self.part = part
        self.us = 0
        self.calls = 0
        self.nested = 0

    def wrap(self, obj, name):
        fn = getattr(obj, name)
        timer = self

        def timed(*args, **kwargs):
            depth = _DEPTH[0]
            if depth:
                _DEPTH[1] += 1
            _DEPTH[0] = depth + 1
            t0 = ticks_us()
            try:
                return fn(*args, **kwargs)
            finally:
                if not depth:
                    timer.us += ticks_diff(ticks_us(), t0)
                    timer.calls += 1
                    timer.nested += _DEPTH[1]
                    _DEPTH[1] = 0
                _DEPTH[0] = depth
        own = name in getattr(obj, "__dict__", {})
        _WRAPPED.append((obj, name, fn, timed, own))
        return True


_WRAPPED = []   # (object, name, original, timed, the original was the object's own attribute)


_ON = [False]


def timers_on(on):
    if _ON[0] == on:
        return
    _ON[0] = on
    for obj, name, fn, timed, own in _WRAPPED:
        if on:
            setattr(obj, name, timed)
        elif own:
            setattr(obj, name, fn)
        else:
            delattr(obj, name)   # back to the class's method, looked up as usual


# (part, [(path, method names), ...]): a path is dotted attribute names from the message-layer
# object; "@alarm" is the /alarm resource, "@sock" the socket the firmware sends on, "@site"
# the request layer (the endpoint's handler, before the layered core: the server itself).
# Whatever this firmware does not have is skipped; a part with nothing found is listed absent.
PARTS = [
    ("decode (Reader.load)", [("reader", ("load",))]),
    ("dedup lookup", [("dedup", ("find",))]),
    ("routing (find, path_is)", [("@site", ("find",)), ("reader", ("path_is",))]),
    ("option lookups (opt, opt_uint, find)", [("reader", ("opt", "opt_uint", "find", "opts"))]),
    ("handler (/alarm handle)", [("@alarm", ("handle",))]),
    ("reply encode (Writer)", [("writer", ("reply_header", "header", "option_uint", "option", "payload", "view"))]),
    ("sendto (a counting fake)", [("@sock", ("sendto",))]),
    ("dedup store", [("dedup", ("add",))]),
]


def resolve(app, ep, path):
    if path == "@sock":
        return getattr(ep, "sock", None)
    site = getattr(ep, "handler", None) or ep
    if path == "@site":
        return site
    if path == "@alarm":
        found = getattr(app, "alarm_resource", None)
        routes = getattr(site, "routes", ())
        for r in routes.values() if isinstance(routes, dict) else routes:
            if getattr(r, "path", None) == b"alarm":
                found = r
        return found
    obj = ep
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def calibrate():
    # What a Timer reports for a call that does nothing: taken off every timed call.
    class Empty:
        def f(self, *args):
            return None
    e = Empty()
    t = Timer("empty")
    t.wrap(e, "f")
    timers_on(True)
    for i in range(0, N, 500):
        gc.collect()
        gc.disable()
        for _ in range(500):
            e.f(1, 2)
        gc.enable()
    timers_on(False)
    del _WRAPPED[:]
    return t.us / t.calls


def bound_socket(s):
    # A loopback UDP socket and its address (this port has no getsockname(): try ports).
    sock = s.socket(s.AF_INET, s.SOCK_DGRAM)
    for port in range(47000, 48000):
        addr = s.getaddrinfo("127.0.0.1", port)[0][-1]
        try:
            sock.bind(addr)
            return sock, addr
        except OSError:
            pass
    raise OSError("no free loopback port")


def socket_costs(pkt, n=2000):
    # The receive loop's own calls per datagram on a real loopback socket: recvfrom (with its
    # allocation), a poll asking whether more waits (ipoll(0), as compat.pending does), and
    # the reply's sendto.
    if _real_socket is None:
        return None
    import select
    rx, rx_addr = bound_socket(_real_socket)
    tx, tx_addr = bound_socket(_real_socket)
    rx.setblocking(False)
    tx.setblocking(False)
    p = select.poll()
    p.register(rx, select.POLLIN)
    out = {"recvfrom": 0, "ipoll": 0, "sendto": 0}
    done = 0
    while done < n:
        batch = min(100, n - done)  # what a socket buffer surely holds
        for _ in range(batch):
            tx.sendto(pkt, rx_addr)
        t0 = ticks_us()
        got = 0
        while got < batch:
            try:
                rx.recvfrom(256)
                got += 1
            except OSError:
                pass
        t1 = ticks_us()
        for _ in range(batch):
            for _ in p.ipoll(0):
                break
        t2 = ticks_us()
        for _ in range(batch):
            rx.sendto(pkt, tx_addr)
        t3 = ticks_us()
        out["recvfrom"] += ticks_diff(t1, t0)
        out["ipoll"] += ticks_diff(t2, t1)
        out["sendto"] += ticks_diff(t3, t2)
        got = 0
        while got < batch:
            try:
                tx.recvfrom(256)
                got += 1
            except OSError:
                pass
        done += batch
    rx.close()
    tx.close()
    return {k: v / n for k, v in out.items()}


def main():
    app, ep, serve = boot()
    for p in [get(1000 + i) for i in range(200)]:   # warm-up: every dedup slot in use, as in a long run
        ep.datagram(p, ADDR)
    bias = calibrate()
    timers = []
    absent = []
    for part, where in PARTS:
        t = Timer(part)
        wrapped = []
        for path, names in where:
            obj = resolve(app, ep, path)
            if obj is not None:
                wrapped += [n for n in names if hasattr(obj, n) and t.wrap(obj, n)]
        if wrapped:
            timers.append(t)
        else:
            absent.append(part)
    timers_on(False)
    sock = getattr(ep, "sock", None)
    sent = Socket.count if isinstance(sock, Socket) else None
    plain, timed_total = run(ep, 5000, N)
    if sent is not None and Socket.count - sent != 2 * N:
        # Every GET must have been answered, or the figures measure an error path.
        raise SystemExit("profile_get: %d of %d GETs answered" % (Socket.count - sent, 2 * N))
    print("MicroPython %s, %s: %d GETs, each a new message ID" % (
        ".".join(str(v) for v in sys.implementation.version[:3]), sys.platform, N))
    print("datagram() per GET, nothing wrapped: %6.2f us" % plain)
    print("with the parts timed:                %6.2f us (in alternate batches; timer cost %.2f us per "
          "timed call, taken off below)" % (timed_total, bias))
    own = 0.0
    for t in timers:
        us = max((t.us - bias * (t.calls + t.nested)) / N, 0.0)
        own += us
        print("  %-38s %6.2f us %3d %%  (%.1f calls per GET%s)" % (
            t.part, us, 100 * us / plain, t.calls / N,
            ", %.1f timed calls inside" % (t.nested / N) if t.nested else ""))
    print("  %-38s %6.2f us %3d %%  (datagram()'s own code: type checks, critical-option scan, "
          "conditionals, Observe check, the calls themselves)" % ("rest", plain - own, 100 * (plain - own) / plain))
    for part in absent:
        print("  %-38s   absent in this firmware" % part)
    kinds = by_kind(ep, N)
    print("datagram() per message kind, nothing wrapped (alternate batches; the differences are the layers):")
    for name, us in kinds:
        print("  %-38s %6.2f us" % (name, us))
    costs = socket_costs(get(4999))
    if costs:
        print("the receive loop's socket calls per datagram (real loopback socket):")
        for k in ("recvfrom", "ipoll", "sendto"):
            print("  %-38s %6.2f us" % (k, costs[k]))
        print("  %-38s %6.2f us" % ("datagram() + these", plain + sum(costs.values())))
    return serve


_keep = main()
