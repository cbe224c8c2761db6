# The long-lived tasks stay up (issue 10, findings 10, 11 and 6): the input-pin task, the timers
# and the receive task each survive a fault in their body; a datagram that cannot be received for
# want of memory is received later; a second server on the port is refused and the first keeps
# its observers; on a board, a server that stops receiving resets itself.
import ast
import asyncio
import os
import socket

import pytest

from firmware import app as app_mod
from firmware import compat, config, hardware, watchdog
from firmware.start import build
from host import coapmsg as coap
from host.simpins import SimPin
from harness import ROOT, FirmwareProcess, free_udp_port, request


def make_app(sock=None):
    cfg = dict(config.DEFAULTS, bind="127.0.0.1", port=free_udp_port(), input_pin=None,
               multicast=False)
    return build(cfg, sock=sock)


async def ask(app, mid, payload=None, timeout=2):
    """A CON GET (or PUT) to the app over UDP; the reply, parsed."""
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    try:
        code = coap.GET if payload is None else coap.PUT
        await loop.sock_sendto(client, request(code, mid=mid, payload=payload or b""),
                               app.sock.getsockname())
        return coap.parse(await asyncio.wait_for(loop.sock_recv(client, 2048), timeout))
    finally:
        client.close()


async def stop(app, *tasks):
    for t in tasks:
        t.cancel()
    if app.rx is not None:
        app.rx.cancel()
    await asyncio.sleep(0)
    app.sock.close()


# -- finding 10: every long-lived task survives an exception in its body ---------------------

def test_input_task_survives_a_failing_press(monkeypatch, capsys):
    async def no_debounce(ms):
        await asyncio.sleep(0)
    monkeypatch.setattr(hardware, "sleep_ms", no_debounce)

    async def scenario():
        presses = []
        heard = asyncio.Event()

        def on_active():
            presses.append(1)
            heard.set()
            if len(presses) == 1:
                raise MemoryError  # e.g. an alarm listener on a full heap

        pin = SimPin(0, "in", "up")
        inp = hardware.Input(pin, True, 50, on_active)
        task = asyncio.create_task(inp.run())
        try:
            for _ in range(2):                      # press, release, press again
                pin.drive(0)
                await asyncio.wait_for(heard.wait(), 5)
                heard.clear()
                pin.drive(1)
                for _ in range(100):                # the release re-arms the input
                    if inp.armed:
                        break
                    await asyncio.sleep(0)
            assert not task.done()
        finally:
            task.cancel()
        return len(presses)

    assert asyncio.run(scenario()) == 2
    assert "E input task failed; going on" in capsys.readouterr().out


def test_timers_task_survives_a_failing_service(capsys):
    async def scenario():
        app = make_app()
        ep = app.endpoint
        real = ep.service
        calls = []
        again = asyncio.Event()

        def service():
            calls.append(1)
            if len(calls) == 1:
                raise MemoryError
            if len(calls) == 3:
                again.set()
            return real()
        ep.service = service
        runner = asyncio.create_task(app.run())
        try:
            await asyncio.wait_for(again.wait(), 5)   # the timers called it again after the fault
            assert not runner.done()
            r = await ask(app, 1, b"ON")               # and the server still serves
            assert (r.code, r.payload) == (coap.CHANGED, b"ON")
        finally:
            await stop(app, runner)

    asyncio.run(scenario())
    assert "E timers failed; going on" in capsys.readouterr().out


@pytest.mark.parametrize("fault, line", [(MemoryError, "E MemoryError while receiving; retrying"),
                                         (ValueError, "E receive task failed; going on")])
def test_receive_task_survives_a_fault(monkeypatch, capsys, fault, line):
    real = compat.readable
    faults = []

    def readable(sock):
        # compat.readable allocates an awaitable on MicroPython: a full heap fails it there.
        if not faults:
            faults.append(1)
            raise fault("injected")
        return real(sock)
    monkeypatch.setattr(compat, "readable", readable)

    async def scenario():
        app = make_app()
        runner = asyncio.create_task(app.run())
        try:
            r = await ask(app, 7)
            assert (r.code, r.payload) == (coap.CONTENT, b"OFF")
            r = await ask(app, 8, b"ON")
            assert (r.code, r.payload) == (coap.CHANGED, b"ON")
            assert not app.rx.done()
        finally:
            await stop(app, runner)

    asyncio.run(scenario())
    assert faults and line in capsys.readouterr().out


# -- finding 6: the receive path on a full heap ------------------------------------------------

class ShortOfMemory(socket.socket):
    """A UDP socket whose recvfrom fails with MemoryError while `fail` > 0, as on a full heap;
    with `biggest`, a buffer of more than that many bytes is never found (a fragmented heap)."""
    fail = 0
    calls = 0
    failed = None   # an asyncio.Event set at each failure, if the test wants to know
    biggest = None
    sizes = ()

    def recvfrom(self, size):
        self.calls += 1
        self.sizes += (size,)
        if self.biggest is not None and size > self.biggest:
            raise MemoryError
        if self.fail:
            self.fail -= 1
            if self.failed is not None:
                self.failed.set()
            raise MemoryError
        return socket.socket.recvfrom(self, size)


def running_short_of_memory():
    """(socket, app, its task): the app serving on a ShortOfMemory socket; inside a running loop."""
    sock = ShortOfMemory(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    app = make_app(sock)
    return sock, app, asyncio.create_task(app.run())


def test_a_datagram_that_cannot_be_received_is_received_later(capsys):
    async def scenario():
        sock, app, runner = running_short_of_memory()
        try:
            assert (await ask(app, 1)).payload == b"OFF"
            assert len(app.endpoint.dedup) == 1
            sock.fail = 3
            calls = sock.calls
            r = await ask(app, 2, b"ON")   # waits in the socket while the heap is full
            assert (r.code, r.payload) == (coap.CHANGED, b"ON")
            # A whole buffer, then a small one: both fail, the loop waits; the same once more,
            # and then the small one is had.
            assert sock.calls - calls == 4
            # The duplicate cache was shed to make room: only the new exchange is in it.
            assert len(app.endpoint.dedup) == 1
        finally:
            await stop(app, runner)

    asyncio.run(scenario())
    assert capsys.readouterr().out.count("E MemoryError while receiving; retrying") == 1


def test_a_fragmented_heap_still_serves_a_plain_request_at_once(capsys):
    # Under the 64k flood the heap ends up with kilobytes free but no hole for a whole receive
    # buffer: every recvfrom(256) fails, for good. A small buffer still takes the datagram: the
    # GET and the PUT are served at once, and the socket does not fill up (issue 10, finding 6).
    async def scenario():
        sock, app, runner = running_short_of_memory()
        try:
            sock.biggest = 64
            assert (await ask(app, 1)).payload == b"OFF"
            r = await ask(app, 2, b"ON")
            assert (r.code, r.payload) == (coap.CHANGED, b"ON")
            assert app.alarm.on
            assert max(sock.sizes) > 64 and 64 in sock.sizes   # it did try a whole buffer first
        finally:
            await stop(app, runner)

    asyncio.run(scenario())
    assert "MemoryError" not in capsys.readouterr().out


def test_a_request_cut_by_the_small_buffer_gets_503_and_is_not_acted_on():
    # What fills the small buffer may have been cut: a PUT whose options push it past 64 bytes
    # is answered 5.03 Service Unavailable from its header (MID and token), and the alarm stays
    # as it was. A whole buffer would have taken it.
    async def scenario():
        sock, app, runner = running_short_of_memory()
        loop = asyncio.get_running_loop()
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        try:
            sock.biggest = 64
            long_put = request(coap.PUT, mid=7, token=b"\x77\x78", payload=b"ON",
                               options=[(coap.URI_HOST, b"h" * 60)])
            assert len(long_put) > 64
            await loop.sock_sendto(client, long_put, app.sock.getsockname())
            r = coap.parse(await asyncio.wait_for(loop.sock_recv(client, 2048), 2))
            assert (r.mtype, r.code, r.mid, r.token) == (coap.ACK, coap.SERVICE_UNAVAILABLE, 7, b"\x77\x78")
            assert r.opt(coap.SIZE1) is None
            assert not app.alarm.on
        finally:
            client.close()
            await stop(app, runner)

    asyncio.run(scenario())


def test_no_first_use_import_on_what_a_peer_can_trigger_in_app():
    # A first-use import on a full heap fails, and a peer could trigger it at will (finding 6).
    with open(os.path.join(ROOT, "firmware", "app.py")) as f:
        tree = ast.parse(f.read())
    app_cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "App")
    methods = {n.name: n for n in app_cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for name in ("receive", "timers", "press"):
        imports = [n.lineno for n in ast.walk(methods[name]) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert imports == [], "App.%s imports at lines %s" % (name, imports)


# -- finding 6: on a board, a deaf server resets itself --------------------------------------

class FakeMachine:
    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1


class FakeWDT:
    def feed(self):
        pass


def watched(app, limit=3):
    """The watchdog task of a board, driven one check at a time by the test: tick() runs one."""
    machine = FakeMachine()
    ticks = asyncio.Queue()
    checked = asyncio.Queue()

    async def sleep(ms):
        await checked.put(1)
        await ticks.get()

    task = asyncio.create_task(watchdog.feed(FakeWDT(), 1000, sleep, watchdog.Ears(app, machine, limit)))

    async def tick():
        await ticks.put(1)
        await asyncio.wait_for(checked.get(), 5)
    return machine, task, tick, checked


def test_a_board_that_receives_nothing_while_datagrams_wait_resets(capsys):
    async def scenario():
        sock, app, runner = running_short_of_memory()
        machine, task, tick, checked = watched(app, limit=3)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            await asyncio.wait_for(checked.get(), 5)   # the first check (at start)
            # Healthy and busy: a request answered between every two checks. No reset.
            for mid in range(1, 6):
                assert (await ask(app, mid)).payload == b"OFF"
                await tick()
            # Quiet: nothing waits in the socket. No reset.
            for _ in range(5):
                await tick()
            assert machine.resets == 0
            # Deaf: a full heap fails every receive while a request waits.
            sock.fail = 10 ** 6
            sock.failed = asyncio.Event()
            client.sendto(request(coap.GET, mid=99), sock.getsockname())
            await asyncio.wait_for(sock.failed.wait(), 5)   # the receive task tried it, in vain
            for _ in range(2):
                await tick()
            assert machine.resets == 0         # not yet: 3 checks in a row
            await tick()
            assert machine.resets == 1
        finally:
            client.close()
            task.cancel()
            await stop(app, runner)

    asyncio.run(scenario())
    assert "E nothing received while datagrams wait: resetting" in capsys.readouterr().out


def test_a_board_whose_receive_task_ended_resets(capsys):
    async def scenario():
        app = make_app()
        runner = asyncio.create_task(app.run())
        machine, task, tick, checked = watched(app)
        try:
            await asyncio.wait_for(checked.get(), 5)
            await tick()
            assert machine.resets == 0
            app.rx.cancel()                    # as if the task had died
            await asyncio.sleep(0)
            await tick()
            assert machine.resets == 1
        finally:
            task.cancel()
            await stop(app, runner)

    asyncio.run(scenario())
    assert "E receive task ended: resetting" in capsys.readouterr().out


def test_the_board_boot_starts_the_watch_with_the_watchdog():
    from firmware import board

    class Machine(FakeMachine):
        def WDT(self, timeout):
            return FakeWDT()
    tasks = []
    app = object()
    board.watchdog(Machine(), 30, tasks, app)
    (coro,) = tasks
    ears = coro.cr_frame.f_locals["ears"]
    coro.close()
    assert ears.app is app and ears.limit == 30
    tasks = []
    assert board.watchdog(Machine(), 0, tasks, app) is None and tasks == []   # "watchdog_s": 0


# -- finding 11: a second server on the port is refused ----------------------------------------

@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
def test_a_second_firmware_on_the_port_is_refused_and_the_first_keeps_its_observers(
        firmware, tmp_path, bind):
    first = firmware(bind=bind)
    watcher = first.client()
    owner = first.client()
    second = FirmwareProcess(tmp_path, {"bind": bind, "port": first.port})
    try:
        r = watcher.request(coap.GET, token=b"w1", options=[(coap.OBSERVE, 0)])
        assert r.opt(coap.OBSERVE) is not None
        with pytest.raises(AssertionError, match="exited"):
            second.start()
        assert second.proc.wait(5) == 1
        out = "".join(second.output)
        assert "E cannot serve on %s port %d:" % (bind, first.port) in out, out
        assert "Traceback" not in out
        # The first server still has the port to itself, and its observer hears every change.
        for state in (b"ON", b"OFF", b"ON"):
            r = owner.request(coap.PUT, payload=state)
            assert (r.code, r.payload) == (coap.CHANGED, state)
            n = watcher.ack(watcher._wait(lambda m: m.token == b"w1", 2, "no notification"))
            assert n.payload == state
        assert first.alive()
    finally:
        second.stop()
        watcher.close()
        owner.close()


def test_the_host_binds_without_so_reuseaddr():
    # A server that binds the port after us is refused by the system, even one that asks to share.
    sock = app_mod.open_socket("127.0.0.1", free_udp_port())
    try:
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError):
            other.bind(sock.getsockname())
        other.close()
    finally:
        sock.close()
