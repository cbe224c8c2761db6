#!/usr/bin/env python3
"""The mixed flood at the board heap (issue 10, finding 6): figures printed as JSON and a summary.

The firmware runs precompiled (.mpy) under `micropython -X heapsize=64k` (harness BOARD_HEAP) on
an ephemeral loopback port. For --seconds (default 300) a flooder sends --rate (500) datagrams/s:
GETs and PUTs of /alarm, Observe churn (registrations under many tokens, deregistrations; CON
notifications ACKed from half the flooder's addresses, so those hold their slots), Block1
fragments, discovery queries (/.well-known/core?rt=..., also to the All-CoAP-Nodes group when
this kernel loops multicast back, else unicast), malformed datagrams and oversized ones (bigger
than the firmware's receive buffer). Meanwhile a legitimate client asks one confirmable GET
/alarm per second, retransmitting as RFC 7252 4.2 says (ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5,
MAX_RETRANSMIT 4). A request is served when a 2.05 with its token answers any of its
transmissions within MAX_TRANSMIT_WAIT (93 s). The client goes on for --after (30) seconds after
the flood. Every 10 s the firmware's console `stats` gives the heap after a collection.

`host_tests/test_flood_5min.py` runs this in the background of the test suite and asserts the
figures (>= 99 % served during the flood, 100 % after it); docs/performance.md has a run.
Progress goes to stderr; --json FILE also writes the figures to FILE.
"""
import argparse
import json
import os
import random
import select
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "host_tests")]

from host import coapmsg as coap  # noqa: E402
from harness import BOARD_HEAP, GROUP, FirmwareProcess, free_udp_port, request  # noqa: E402

# RFC 7252 4.8: the client's transmission parameters, and the window they give.
ACK_TIMEOUT = 2.0
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4
MAX_TRANSMIT_WAIT = ACK_TIMEOUT * ((1 << (MAX_RETRANSMIT + 1)) - 1) * ACK_RANDOM_FACTOR   # 93 s

# What the flood is made of: kind -> share of the datagrams.
MIX = {
    "get": 0.15,          # GET /alarm, CON or NON
    "put": 0.10,          # PUT /alarm ON/OFF: each change notifies every observer
    "observe": 0.15,      # register under a new token, or deregister one (Observe 1, or a plain GET)
    "block1": 0.10,       # PUT /alarm in 16-byte Block1 fragments, in and out of order, some too big
    "discovery": 0.10,    # GET /.well-known/core?rt=... (unicast, CON or NON)
    "multicast": 0.05,    # NON GET /.well-known/core?rt=... to the group (unicast when unavailable)
    "malformed": 0.20,    # random bytes, or a request with some bytes broken
    "oversized": 0.15,    # 300 to 1400 bytes: a request with a big body, or random bytes
}
STATS_EVERY = 10          # s between two `stats` (heap after a collection)
SOURCES = 8               # flooder addresses (endpoints); the first half ACK CON notifications
QUERIES = (b"rt=alarm", b"rt=health", b"rt=x", b"if=core.a", b"href=/alarm", b"rt=alarm*", b"ct=0",
           b"obs", b"rt=" + b"z" * 40)


def multicast_works():
    """Does this kernel deliver multicast sent on 127.0.0.1 back to a group socket here?"""
    port = free_udp_port()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.bind((GROUP, port))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"))
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        tx.sendto(b"probe", (GROUP, port))
        rx.settimeout(1.0)
        rx.recvfrom(16)
        return True
    except OSError:
        return False
    finally:
        rx.close()
        tx.close()


def malformed(rnd):
    """Random bytes, or a valid request with some bytes broken (test_storm.py's storm sends these too)."""
    if rnd.random() < 0.5:
        return rnd.randbytes(rnd.randrange(0, 64))
    raw = bytearray(request(rnd.choice((1, 2, 3, 4, 5)), rnd.choice(("alarm", ".well-known/core", "x/y")),
                            mtype=rnd.randrange(4), mid=rnd.randrange(65536),
                            token=rnd.randbytes(rnd.randrange(9)), payload=rnd.choice((b"", b"ON", b"OFF")),
                            options=rnd.choice(((), ((coap.OBSERVE, 0),), ((9, b"x"),)))))
    for _ in range(rnd.randrange(1, 4)):
        i = rnd.randrange(len(raw))
        if rnd.random() < 0.7:
            raw[i] = rnd.randrange(256)
        else:
            del raw[i:]
            break
    return bytes(raw)


class Flooder:
    """Sends the mix at `rate` datagrams/s until stopped, from SOURCES addresses; ACKs CON
    notifications on the first half of them and drops every other reply unread."""

    def __init__(self, port, rate, seed, group, mix=None):
        mix = mix or MIX
        self.target = ("127.0.0.1", port)
        self.group = (GROUP, port) if group else None
        self.rate = rate
        self.rnd = random.Random(seed)
        self.socks = []
        for _ in range(SOURCES):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks.append(s)
        self.msock = None
        if group:
            m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            m.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            m.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            m.bind(("127.0.0.1", 0))
            m.setblocking(False)
            self.msock = m
        self.mid = [self.rnd.randrange(65536) for _ in range(SOURCES)]
        self.tokens = [[] for _ in range(SOURCES)]    # registered (or tried) Observe tokens
        self.block = [0] * SOURCES                    # next Block1 number per source
        self.kinds = list(mix)
        self.weights = [mix[k] for k in self.kinds]
        self.sent = dict.fromkeys(self.kinds, 0)
        self.acked = 0                                # CON notifications ACKed
        self.errors = 0                               # sends refused by the kernel
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def next_mid(self, k):
        self.mid[k] = (self.mid[k] + 1) & 0xFFFF
        return self.mid[k]

    def one(self, kind, k):
        """One datagram of this kind from source k: (bytes, destination)."""
        rnd = self.rnd
        mtype = coap.CON if rnd.random() < 0.7 else coap.NON
        mid = self.next_mid(k)
        token = rnd.randbytes(rnd.randrange(1, 9))
        if kind == "get":
            return request(coap.GET, "alarm", mtype, mid, token), self.target
        if kind == "put":
            return request(coap.PUT, "alarm", mtype, mid, token, rnd.choice((b"ON", b"OFF"))), self.target
        if kind == "observe":
            toks = self.tokens[k]
            if toks and rnd.random() < 0.45:
                old = toks.pop(rnd.randrange(len(toks)))
                opts = ((coap.OBSERVE, 1),) if rnd.random() < 0.7 else ()
                return request(coap.GET, "alarm", mtype, mid, old, options=opts), self.target
            toks.append(token)
            del toks[:-32]
            return request(coap.GET, "alarm", mtype, mid, token, options=((coap.OBSERVE, 0),)), self.target
        if kind == "block1":
            num = self.block[k]
            self.block[k] = 0 if num >= 3 or rnd.random() < 0.1 else num + 1
            if rnd.random() < 0.2:
                num = rnd.randrange(64)          # out of order, or far past max_payload
            more = 1 if num < 3 else 0
            opts = [(coap.BLOCK1, (num << 4) | (more << 3) | 0)]   # SZX 0: 16-byte blocks
            if rnd.random() < 0.2:
                opts.append((coap.SIZE1, rnd.choice((64, 1000, 65535))))
            body = rnd.choice((b"O", b"N")) * (16 if more else rnd.randrange(1, 17))
            return request(coap.PUT, "alarm", mtype, mid, token, body, opts), self.target
        if kind in ("discovery", "multicast"):
            q = rnd.choice(QUERIES)
            opts = ((coap.URI_QUERY, q),)
            if kind == "multicast":
                dest = self.group or self.target
                return request(coap.GET, ".well-known/core", coap.NON, mid, token, options=opts), dest
            return request(coap.GET, ".well-known/core", mtype, mid, token, options=opts), self.target
        if kind == "malformed":
            return malformed(rnd), self.target
        # oversized: more than the receive buffer (max_payload + 192 = 256 B by default)
        size = rnd.randrange(300, 1400)
        if rnd.random() < 0.5:
            return rnd.randbytes(size), self.target
        head = request(rnd.choice((coap.GET, coap.PUT, coap.POST)), rnd.choice(("alarm", ".well-known/core")),
                       mtype, mid, token, b"x")
        return head + rnd.randbytes(size - len(head)), self.target

    def drain(self):
        """Read the replies that came back; ACK CON notifications on the holding half."""
        for k, s in enumerate(self.socks):
            for _ in range(64):
                try:
                    data = s.recv(2048)
                except OSError:
                    break
                if k < SOURCES // 2 and len(data) >= 4 and data[0] >> 4 == 0x4 and data[1]:
                    try:   # a CON with a code: a notification (or a separate response): ACK it
                        s.send(bytes((0x60, 0, data[2], data[3])))
                        self.acked += 1
                    except OSError:
                        pass
        if self.msock is not None:
            try:
                while True:
                    self.msock.recv(2048)
            except OSError:
                pass

    def run(self):
        rnd = self.rnd
        t0 = time.monotonic()
        n = 0
        while not self.stop.is_set():
            # Paced by the clock: a 10 ms tick sends what is due, so a slow tick catches up.
            due = int((time.monotonic() - t0) * self.rate)
            for kind in rnd.choices(self.kinds, self.weights, k=max(0, due - n)):
                k = rnd.randrange(SOURCES)
                data, dest = self.one(kind, k)
                s = self.msock if dest[0] == GROUP else self.socks[k]
                try:
                    s.sendto(data, dest)
                except OSError:
                    self.errors += 1
                self.sent[kind] += 1
            n = max(n, due)
            self.drain()
            time.sleep(0.01)
        self.elapsed = time.monotonic() - t0

    def close(self):
        for s in self.socks + ([self.msock] if self.msock else []):
            s.close()


class LegitClient:
    """One confirmable GET /alarm per second, retransmitted as RFC 7252 4.2 says."""

    def __init__(self, port, seed):
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.rnd = random.Random(seed)
        self.mid = self.rnd.randrange(65536)
        self.reqs = []          # every request: dict
        self.open = {}          # mid -> request, still waiting

    def ask(self, phase, now):
        self.mid = (self.mid + 1) & 0xFFFF
        timeout = ACK_TIMEOUT * (1 + self.rnd.random() * (ACK_RANDOM_FACTOR - 1))
        r = {"phase": phase, "t": now, "mid": self.mid, "token": self.rnd.randbytes(4), "timeout": timeout,
             "next": now + timeout, "sends": 1, "acked": False, "served": None, "code": None}
        r["data"] = request(coap.GET, "alarm", coap.CON, r["mid"], r["token"])
        self.reqs.append(r)
        self.open[r["mid"]] = r
        self.sock.sendto(r["data"], self.addr)

    def step(self, until):
        """Receive and retransmit until the monotonic time `until`."""
        while True:
            now = time.monotonic()
            for r in list(self.open.values()):
                if now - r["t"] >= MAX_TRANSMIT_WAIT:
                    del self.open[r["mid"]]               # the window is over: not served
                elif not r["acked"] and now >= r["next"] and r["sends"] <= MAX_RETRANSMIT:
                    r["timeout"] *= 2
                    r["next"] = now + r["timeout"]
                    r["sends"] += 1
                    self.sock.sendto(r["data"], self.addr)
            left = until - now
            if left <= 0:
                return
            wait = min([left] + [max(0.0, r["next"] - now) for r in self.open.values() if not r["acked"]])
            if select.select([self.sock], [], [], wait)[0]:
                self.receive(self.sock.recv(2048), time.monotonic())

    def receive(self, data, now):
        try:
            msg = coap.parse(data)
        except Exception:
            return
        r = self.open.get(msg.mid) if msg.mtype == coap.ACK else None
        if r is not None and msg.code == coap.EMPTY:
            r["acked"] = True          # a separate response will follow: stop retransmitting
            return
        if r is None or r["token"] != msg.token:   # a separate response: matched by token
            r = next((x for x in self.open.values() if x["token"] == msg.token), None)
            if msg.mtype == coap.CON:
                self.sock.sendto(bytes((0x60, 0, data[2], data[3])), self.addr)
            if r is None:
                return
        del self.open[r["mid"]]
        r["code"] = msg.code
        if msg.code == coap.CONTENT:
            r["served"] = now - r["t"]

    def figures(self, phase):
        rs = [r for r in self.reqs if r["phase"] == phase]
        served = sorted(r["served"] for r in rs if r["served"] is not None)
        other = {}
        for r in rs:
            if r["code"] is not None and r["code"] != coap.CONTENT:
                key = "%d.%02d" % (r["code"] >> 5, r["code"] & 31)
                other[key] = other.get(key, 0) + 1
        return {"asked": len(rs), "served": len(served),
                "served_pct": round(100.0 * len(served) / len(rs), 2) if rs else None,
                "answered_not_205": other,
                "retransmitted": sum(1 for r in rs if r["sends"] > 1),
                "p50_ms": round(served[len(served) // 2] * 1000, 2) if served else None,
                "max_ms": round(served[-1] * 1000, 1) if served else None,
                "unserved_at_s": [round(r["t"] - self.t0, 1) for r in rs if r["served"] is None][:50]}


def run(seconds=300.0, after=30.0, rate=500, heap=BOARD_HEAP, seed=10, progress=None, mix=None, warm=False):
    """The whole run; returns the figures (a dict)."""
    say = progress or (lambda text: None)
    group = multicast_works()
    fw = FirmwareProcess(tempfile.mkdtemp(prefix="coap-flood-"), {"log_level": "warning"}, heap=heap)
    fw.start(timeout=60)
    res = {"heap": heap, "flood_seconds": seconds, "after_seconds": after, "rate": rate,
           "multicast_to_group": group, "port": fw.port, "mix": mix or MIX, "warm": warm}
    samples = []       # (s since the flood started, heap in use, heap free), after a collection
    stats_failed = [0]
    died = None
    last = {}
    client = LegitClient(fw.port, seed + 1)
    flooder = Flooder(fw.port, rate, seed, group, mix)
    try:
        def sample(t0):
            try:
                s = fw.stats(timeout=10)
            except (AssertionError, OSError):   # no `stats` answer (a dead console, or firmware)
                stats_failed[0] += 1
                return
            last.update(s)
            samples.append((round(time.monotonic() - t0, 1), s["heap"], s["free"]))

        if warm:
            # Load the first-use modules on a calm heap: Block1, a discovery filter, Block2.
            c = fw.client()
            c.request(coap.PUT, payload=b"ON", options=[(coap.BLOCK1, 0)])
            c.request(coap.GET, ".well-known/core", options=[(coap.URI_QUERY, b"rt=alarm")])
            c.request(coap.GET, options=[(coap.BLOCK2, 0)])
            c.close()
        sample(time.monotonic())
        before = dict(last)
        t0 = client.t0 = time.monotonic()
        flooder.thread.start()
        stop_stats = threading.Event()

        def sampler():
            while not stop_stats.wait(STATS_EVERY):
                sample(t0)
        st = threading.Thread(target=sampler, daemon=True)
        st.start()
        i = 0
        while i < seconds + after:
            client.step(t0 + i)
            if died is None and not fw.alive():
                died = round(time.monotonic() - t0, 1)
                say("the firmware died at %s s (exit status %s)" % (died, fw.proc.poll()))
                say("".join(fw.output[-12:]))
                break
            if i >= seconds and not flooder.stop.is_set():
                flooder.stop.set()
                flooder.thread.join()
                say("flood over: %d datagrams in %.0f s; the client goes on for %d s" % (
                    sum(flooder.sent.values()), flooder.elapsed, after))
            client.ask("during" if i < seconds else "after", time.monotonic())
            if i and i % 30 == 0 and i < seconds:
                d = client.figures("during")
                say("%3d s: %d datagrams sent, legit %d/%d served, heap free %s" % (
                    i, sum(flooder.sent.values()), d["served"], d["asked"],
                    samples[-1][2] if samples else "?"))
            i += 1
        if not flooder.stop.is_set():
            flooder.stop.set()
            flooder.thread.join()
        # The last requests get their whole window, but no more.
        end = time.monotonic() + (0 if died else MAX_TRANSMIT_WAIT)
        while client.open and time.monotonic() < end:
            client.step(min(end, time.monotonic() + 1))
        stop_stats.set()
        st.join()
        if fw.alive():
            sample(t0)
    finally:
        flooder.stop.set()
        alive = fw.alive()
        fw.stop()
        flooder.close()
        client.sock.close()
    out = "".join(fw.output)
    res.update({
        "sent": flooder.sent, "sent_total": sum(flooder.sent.values()),
        "rate_achieved": round(sum(flooder.sent.values()) / flooder.elapsed, 1),
        "send_errors": flooder.errors, "notifications_acked": flooder.acked,
        "during": client.figures("during"), "after": client.figures("after"),
        "heap_before": before.get("heap"), "free_before": before.get("free"),
        "heap_max": max((s[1] for s in samples), default=None),
        "free_min": min((s[2] for s in samples), default=None),
        "heap_samples": samples, "stats_failed": stats_failed[0],
        "final_stats": {k: list(v) if isinstance(v, tuple) else v for k, v in last.items()},
        "memory_errors": out.count("MemoryError"),
        "memory_errors_while_receiving": out.count("MemoryError while receiving"),
        "dropped": out.count(" dropped: "), "task_failed": out.count(" failed; going on"),
        "alive": alive, "died_at_s": died, "exit_status": fw.proc.returncode,
        "output_tail": fw.output[-12:],
    })
    return res


def summary(res):
    d, a = res["during"], res["after"]
    return "\n".join([
        "flood at %s: %d datagrams in %d s (%.0f/s; group %s), mix %s" % (
            res["heap"], res["sent_total"], res["flood_seconds"], res["rate_achieved"],
            "multicast" if res["multicast_to_group"] else "unicast (no loopback multicast)",
            ", ".join("%s %d" % kv for kv in res["sent"].items())),
        "legit CON GET /alarm during the flood: %s/%s served (%s %%), %d retransmitted, p50 %s ms, max %s ms, other answers %s" % (
            d["served"], d["asked"], d["served_pct"], d["retransmitted"], d["p50_ms"], d["max_ms"], d["answered_not_205"]),
        "after it (%d s): %s/%s served (%s %%)" % (res["after_seconds"], a["served"], a["asked"], a["served_pct"]),
        "heap after gc: in use %s B before, at most %s B; free at least %s B (%s before)" % (
            res["heap_before"], res["heap_max"], res["free_min"], res["free_before"]),
        "MemoryError lines %d (while receiving %d), datagrams dropped %d, task faults %d, `stats` unanswered %d, "
        "firmware %s" % (
            res["memory_errors"], res["memory_errors_while_receiving"], res["dropped"], res["task_failed"],
            res["stats_failed"], "alive" if res["alive"] else "DEAD (exit %s at %s s)" % (res["exit_status"], res["died_at_s"])),
        "firmware counted: %s" % " ".join("%s=%s" % kv for kv in res["final_stats"].items()),
    ])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300, help="how long the flood lasts (default 300)")
    ap.add_argument("--after", type=float, default=30, help="how long the client goes on after it (default 30)")
    ap.add_argument("--rate", type=int, default=500, help="flood datagrams per second (default 500)")
    ap.add_argument("--heap", default=BOARD_HEAP, help="the VM's -X heapsize (default %s)" % BOARD_HEAP)
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--mix", metavar="KIND=SHARE,...",
                    help="another mix (kinds: %s); e.g. --mix oversized=1 to isolate one" % ", ".join(MIX))
    ap.add_argument("--warm", action="store_true",
                    help="before the flood, load what the firmware loads on first use (Block1, Block2, a query)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args(argv)
    mix = None
    if args.mix:
        mix = {}
        for part in args.mix.split(","):
            kind, _, share = part.partition("=")
            if kind not in MIX:
                ap.error("--mix: no kind %r (kinds: %s)" % (kind, ", ".join(MIX)))
            mix[kind] = float(share or 1)

    def progress(text):
        sys.stderr.write("[flood] %s\n" % text)
        sys.stderr.flush()
    try:
        res = run(args.seconds, args.after, args.rate, args.heap, args.seed, progress, mix, args.warm)
    except Exception as e:   # the test reads the file: say what went wrong there too
        res = {"error": "%s: %s" % (type(e).__name__, e)}
        if args.json:
            with open(args.json + ".tmp", "w") as f:
                json.dump(res, f)
            os.replace(args.json + ".tmp", args.json)
        raise
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    print(json.dumps({k: v for k, v in res.items() if k not in ("heap_samples", "output_tail")}, indent=1))
    print()
    print(summary(res))


if __name__ == "__main__":
    main()
