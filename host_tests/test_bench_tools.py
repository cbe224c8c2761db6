# The bench's own tools (tools/bench.py, mp_memprobe.py, vm_ceiling.py): they must keep
# measuring the firmware as it is, and a missing outside tool must cost one line, not the bench.
import os
import socket
import subprocess
import sys

from harness import ROOT, free_udp_port, precompiled_firmware, request, tool

from host import coapmsg as coap

sys.path.insert(0, os.path.join(ROOT, "tools"))
import bench  # noqa: E402


def test_memprobe_boots_the_firmware_and_sees_it_serve():
    m = bench.memory()
    assert m["answered"] is True            # the booted firmware answered a GET 2.05
    assert m["observers"] == 8              # every observer got a reply with Observe
    assert m["heap_after_boot"] > 0 and m["heap_per_observer"] > 0
    assert m["vm"].endswith("64-bit")
    assert m["full_features_answered"] == "5/5"   # JSON, CBOR, /health, ?rt=alarm, JSON PUT: 2.xx


def test_oscore_figures_come_from_the_firmware_serving_protected_gets():
    o = bench.oscore(n=200)
    assert o["heap_after_boot_0"] < o["heap_after_boot_1"] < o["heap_after_boot_4"]
    assert 300 < o["heap_per_context"] < 3000
    assert o["us_plain_get"] > 0 and o["us_protected_get"] > o["us_plain_get"]


def test_vm_ceiling_answers_a_get_as_the_firmware_does(firmware):
    fw = firmware(log_level="warning")
    port = free_udp_port()
    p = bench.start_vm_ceiling(port)
    assert p is not None, "tools/vm_ceiling.py never answered"
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        req = request(coap.GET, "alarm", mid=0x1234, token=b"\x56\x78")
        replies = []
        for dest in (fw.port, port):
            s.sendto(req, ("127.0.0.1", dest))
            replies.append(s.recv(2048))
        s.close()
        assert replies[0] == replies[1]     # same bytes: ACK 2.05, MID and token echoed, "OFF"
        assert coap.parse(replies[1]).payload == b"OFF"
    finally:
        p.terminate()
        p.wait()


def test_32bit_figures_are_skipped_with_the_missing_tool_named(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "WASM_PREFIX", str(tmp_path))  # nothing installed there
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    assert bench.memory32() == {"skipped": "skipped: node not found (install Node.js 18 or later)"}
    monkeypatch.setattr(bench.shutil, "which", lambda name: None if name == "npm" else "/bin/true")
    assert bench.memory32() == {"skipped": "skipped: npm not found (it comes with Node.js)"}


def test_bench_help_runs():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--seconds" in r.stdout and "--flood" in r.stdout


def test_flood_help_runs():
    # The flood itself runs in test_flood_5min.py; here only its command line.
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flood.py"), "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--seconds" in r.stdout and "--mix" in r.stdout


def test_c_client_gets_answers_from_the_ceiling():
    import pytest
    run = bench.c_client()
    if isinstance(run, str):
        pytest.skip(run)
    port = free_udp_port()
    p = bench.start_vm_ceiling(port)
    try:
        rps, p50, p99 = run(port, "alarm", 4, 0.5)
        assert rps > 0 and 0 < p50 <= p99
    finally:
        p.terminate()
        p.wait()


def test_ceiling_ratio_is_the_median_of_rounds_measured_together():
    fw = {"rounds": [[10, 0.05], [30, 0.04], [8, 0.09]]}
    ceiling = {"rounds": [[40, 0.02], [60, 0.02], [16, 0.03]]}
    assert bench.paired_median(fw, ceiling, 0) == 0.5     # 0.25, 0.5, 0.5
    assert bench.paired_median(fw, ceiling, 1) == 2.5     # 2.5, 2, 3


def test_profile_runs_against_the_firmware(tmp_path):
    env = dict(os.environ, MICROPYPATH=precompiled_firmware() + os.pathsep + ".frozen")
    env.pop("COAP_ALARM_CONFIG", None)
    r = subprocess.run([tool("micropython"), os.path.join(ROOT, "tools", "profile_get.py"), "1000"],
                       capture_output=True, text=True, timeout=120, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stdout + r.stderr      # it stops if a GET went unanswered
    assert "new CON GET (served in full)" in r.stdout


def test_smallest_heap_search_finds_the_same_answer_from_either_side():
    sizes = ["96k", "80k", "72k", "64k", "60k", "56k", "52k", "48k"]
    for smallest in sizes + [None]:
        tried = []

        def passes(heap):
            tried.append(heap)
            return smallest is not None and sizes.index(heap) <= sizes.index(smallest)
        assert bench.smallest_heap(sizes, "64k", passes) == smallest
        assert len(tried) == len(set(tried))   # no size is run twice


def test_32bit_probe_when_the_webassembly_port_is_installed():
    import pytest
    pkg = os.path.join(bench.WASM_PREFIX, "node_modules", *bench.WASM_PACKAGE.split("/"))
    if not bench.shutil.which("node") or not os.path.exists(os.path.join(pkg, "micropython.mjs")):
        pytest.skip("the WebAssembly port is not installed: `make bench` installs it into build/wasm32")
    m = bench.memory32()
    assert m["vm"] == "webassembly 32-bit" and m["answered"] is True and m["observers"] == 8
    # Collected in phases: without them this port frees nothing and the figure balloons.
    assert m["heap_after_boot"] < m["unix64_heap_after_boot"]
    # Four OSCORE contexts boot there too (a stand-in for cryptolib, which that port lacks).
    assert m["heap_after_boot"] < m["oscore4_heap_after_boot"] < m["unix64_oscore4_heap_after_boot"]


def test_baseline_row_runs_the_firmware_of_a_revision():
    p = bench.start_baseline("HEAD", free_udp_port())
    assert not isinstance(p, str), p
    p.terminate()
    p.wait()
    assert bench.start_baseline("no-such-revision", free_udp_port()).startswith("git archive no-such-revision failed")
