# What differs between CPython (host tests) and MicroPython (unix port and boards), in one place.
# The CPython half lives in host/compat_cpython.py: host-only, never copied to a board. It also
# stands in for MicroPython's cryptolib (AES), which the OSCORE code imports by name.
import sys
import time

if sys.implementation.name == "micropython":
    import asyncio
    from micropython import const

    # The one MicroPython internal the firmware uses: asyncio's IO queue (readable() below).
    # Fail at import, naming the versions tested, rather than deep in the receive loop.
    if not hasattr(getattr(asyncio.core, "_io_queue", None), "queue_read"):
        raise ImportError("coap-alarm needs asyncio.core._io_queue.queue_read, which this "
                          "MicroPython lacks (tested with MicroPython 1.29)")

    ticks_ms = time.ticks_ms
    ticks_add = time.ticks_add
    ticks_diff = time.ticks_diff
    sleep_ms = asyncio.sleep_ms

    class readable:
        # Awaitable that parks the task until the socket is readable (asyncio's own IO queue).
        def __init__(self, sock):
            self.sock = sock

        def __iter__(self):
            yield asyncio.core._io_queue.queue_read(self.sock)


    def pending(sock):
        """A function telling, without blocking or allocating, whether sock has data to read."""
        import select
        p = select.poll()
        p.register(sock, select.POLLIN)

        def more():
            for _ in p.ipoll(0):  # ipoll: no result list
                return True
            return False
        return more

    try:
        import machine as _machine
    except ImportError:
        _machine = None
    # The unix port has a `machine` module but no Pin: that means "simulate the pins".
    machine = _machine if (_machine is not None and hasattr(_machine, "Pin")) else None
    if machine is not None:
        ThreadSafeFlag = asyncio.ThreadSafeFlag  # set() from a real pin interrupt
    else:
        # Simulated pins "interrupt" from the loop itself, so an Event is enough. The unix port
        # polls a ThreadSafeFlag in 1 ms steps, which would add up to 1 ms to every request.
        class ThreadSafeFlag(asyncio.Event):
            async def wait(self):
                await asyncio.Event.wait(self)
                self.clear()
else:
    from host.compat_cpython import (const, ticks_ms, ticks_add, ticks_diff,  # noqa: F401
                                         ThreadSafeFlag, sleep_ms, readable, pending)
    machine = None


def getenv(name, default=None):
    try:
        import os
        v = os.getenv(name)
    except (ImportError, AttributeError):
        return default
    return default if v is None else v


def gc_early():
    """Collect once an eighth of the free heap is used, not only when it is full: garbage freed
    early leaves larger holes, so a small heap fragments less; a big one rarely collects.
    No-op on CPython."""
    import gc
    gc.collect()
    if hasattr(gc, "threshold"):
        gc.threshold(gc.mem_free() // 8)


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
