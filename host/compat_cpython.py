# The CPython side of compat.py (host tests only): MicroPython's names, built on CPython's.
# Never imported on MicroPython; compat.py is the only importer.
import asyncio
import time

_T0 = time.monotonic_ns()


def const(x):
    # micropython.const: the compiler folds it there; here it is just the value.
    return x


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


def pending(sock):
    import select

    def more():
        return bool(select.select([sock], [], [], 0)[0])
    return more


class _Aes:
    # cryptolib.aes(key, mode[, IV]) for the OSCORE code under CPython, from the `cryptography`
    # package, as MicroPython's behaves: mode 1 (ECB) or 2 (CBC, with a 16-byte IV; the chaining
    # value carried from one encrypt() call to the next); input a whole number of 16-byte blocks;
    # encrypt(in_buf) returns bytes, encrypt(in_buf, out_buf) writes out_buf (may be in_buf).
    def __init__(self, key, mode, IV=None):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        if mode == 1:
            m = modes.ECB()
        elif mode == 2:
            if IV is None or len(IV) != 16:
                raise ValueError("IV")   # as MicroPython's: CBC needs its 16-byte IV
            m = modes.CBC(bytes(IV))
        else:
            raise ValueError("mode")
        self._enc = Cipher(algorithms.AES(bytes(key)), m).encryptor()

    def encrypt(self, in_buf, out_buf=None):
        if len(in_buf) % 16:
            raise ValueError("blksize % 16")
        out = self._enc.update(bytes(in_buf))
        if out_buf is None:
            return out
        out_buf[:len(out)] = out


def _install_cryptolib():
    # MicroPython's `cryptolib` module, as far as the firmware uses it (aes in ECB and CBC modes): the
    # firmware imports it by name on both, and no name for it is added to a board's compat.
    import sys
    import types
    if "cryptolib" not in sys.modules:
        mod = types.ModuleType("cryptolib")
        mod.aes = _Aes
        sys.modules["cryptolib"] = mod


_install_cryptolib()
