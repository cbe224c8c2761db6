# What differs between CPython (host tests) and MicroPython (unix port and boards), in one place.
import sys
import time

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    import asyncio
    from asyncio import core as _core

    ticks_ms = time.ticks_ms
    ticks_add = time.ticks_add
    ticks_diff = time.ticks_diff
    ThreadSafeFlag = asyncio.ThreadSafeFlag
    sleep_ms = asyncio.sleep_ms

    class _Readable:
        # Awaitable that parks the task until the socket is readable (asyncio's own IO queue).
        def __init__(self, sock):
            self.sock = sock

        def __iter__(self):
            yield _core._io_queue.queue_read(self.sock)

    def readable(sock):
        return _Readable(sock)

    try:
        import machine as _machine
    except ImportError:
        _machine = None
    # The unix port has a `machine` module but no Pin: that means "simulate the pins".
    machine = _machine if (_machine is not None and hasattr(_machine, "Pin")) else None
else:
    import asyncio

    _T0 = time.monotonic_ns()

    def ticks_ms():
        return ((time.monotonic_ns() - _T0) // 1000000) & 0x3FFFFFFF

    def ticks_add(t, delta):
        return (t + delta) & 0x3FFFFFFF

    def ticks_diff(a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d & 0x20000000 else d

    class ThreadSafeFlag:
        # Same surface as MicroPython's: set() from "interrupt" context, await wait() in the loop.
        def __init__(self):
            self._ev = asyncio.Event()

        def set(self):
            self._ev.set()

        def clear(self):
            self._ev.clear()

        async def wait(self):
            await self._ev.wait()
            self._ev.clear()

    async def sleep_ms(ms):
        await asyncio.sleep(ms / 1000)

    async def readable(sock):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = sock.fileno()
        loop.add_reader(fd, fut.set_result, None)
        try:
            await fut
        finally:
            loop.remove_reader(fd)

    machine = None


def getenv(name, default=None):
    try:
        import os
        v = os.getenv(name)
    except (ImportError, AttributeError):
        return default
    return default if v is None else v


def sockaddr(host, port):
    # Resolve to whatever this socket module wants in bind()/sendto().
    import socket
    return socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]


def addr_str(addr):
    # CPython gives (host, port); the unix port gives raw struct sockaddr bytes; boards give a tuple too.
    if isinstance(addr, tuple):
        return "%s:%d" % (addr[0], addr[1])
    if isinstance(addr, (bytes, bytearray)) and len(addr) >= 8 and addr[0] == 2:
        return "%d.%d.%d.%d:%d" % (addr[4], addr[5], addr[6], addr[7], (addr[2] << 8) | addr[3])
    return repr(addr)


def mem_free():
    # Free heap in bytes on MicroPython; CPython has no such figure (None).
    import gc
    f = getattr(gc, "mem_free", None)
    return f() if f is not None else None
