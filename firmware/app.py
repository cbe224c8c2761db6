# The running alarm: the receive loop, timers and run-time changes, on one asyncio loop.
import asyncio
import socket

from firmware import compat, log


def open_socket(bind, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(compat.sockaddr(bind, port))
    sock.setblocking(False)
    return sock


class App:
    """The running alarm: receive loop, timers, and what changes at run time. The wiring is
    boot-only code and lives in start.py (freed after boot)."""

    def __init__(self, cfg, machine=None, sock=None, ip=None, on=False):
        from firmware import start
        start.wire(self, cfg, machine, sock, ip, on)

    def _raise(self):
        self.alarm.set(True, "pin")
        self.server.service()

    def _changed(self, on, source):
        log.info("alarm %s (%s)", "ON" if on else "OFF", source)
        self.server.changed(self.alarm_resource)

    def network_up(self, ip=None):
        """Call when the network (re)connects, with our address: DHCP may have given a new one,
        and the directory may have lost us meanwhile."""
        if ip and self.follow and ip != self.bound and self.rx:
            # The unicast socket is bound to our address (see start.wire): follow the new one.
            try:
                sock = open_socket(ip, self.port)
            except OSError as e:
                sock = None
                log.error("cannot listen on %s: %s", ip, e)
            if sock is not None:
                log.info("address changed: now serving coap://%s:%d/alarm", ip, self.port)
                self.rx.cancel()
                self.sock.close()
                self.sock = self.server.sock = sock
                self.bound = ip
                self.rx = asyncio.create_task(self.receive(sock))
                if self.group_sock is None:  # Wi-Fi was not up at boot: join the group now
                    import firmware
                    from firmware import start
                    self.group_sock = start.multicast(self, ip, True)
                    firmware.unload("start")  # boot code, needed once more: free it again
                    if self.group_sock is not None:
                        asyncio.create_task(self.receive(self.group_sock, True))
        if self.rd is not None:
            self.rd.restart()

    async def receive(self, sock, mcast=False):
        server = self.server
        size = server.rx_size  # what the server accepts, not a full 1152-byte datagram
        more = compat.pending(sock)
        while True:
            await compat.readable(sock)
            # Drain a bounded batch, then let other tasks run. Asking first, instead of reading
            # until EAGAIN, saves an OSError and a receive buffer (~350 B) per batch.
            for _ in range(16):
                try:
                    data, addr = sock.recvfrom(size)
                except OSError:
                    break
                except MemoryError:
                    # A fragmented heap: the datagram waits in the socket. Shed the duplicate
                    # cache (what pins small objects) and retry shortly, rather than lose this
                    # task and with it the server. (A constant: print allocates nothing.)
                    print("E MemoryError while receiving; retrying")
                    server.dedup.clear()
                    await compat.sleep_ms(20)
                    break
                server.datagram(data, addr, mcast)
                if not more():
                    break
            if server.pending:
                server.service()

    async def timers(self):
        period = self.health_period
        next_health = period
        while True:
            # Also keeps Uptime clear of ticks wrap-around.
            if self.uptime() >= next_health:
                next_health = self.uptime() + period
                self.server.changed(self.health)
            # Capped so that a new retransmission deadline is never missed by much.
            await compat.sleep_ms(min(self.server.service(), 100))

    def stats(self):
        # Host console only (simpins): heap after a collection, and how full each table is.
        s = self.server
        used, free = compat.heap()
        return "stats heap=%d free=%d observers=%d/%d dedup=%d/%d outbox=%d received=%d malformed=%d" % (
            used, free, len(s.observers), s.observers.capacity, len(s.dedup),
            s.dedup.capacity, len(s.outbox), s.received, s.malformed)

    async def run(self, console=False):
        self.rx = asyncio.create_task(self.receive(self.sock))
        tasks = [asyncio.create_task(self.timers())]
        if self.group_sock is not None:
            tasks.append(asyncio.create_task(self.receive(self.group_sock, True)))
        if self.input is not None:
            tasks.append(asyncio.create_task(self.input.run()))
        if console:
            from host import simpins
            tasks.append(asyncio.create_task(simpins.console(
                self.alarm, self.input.pin if self.input else None,
                self.input.active_low if self.input else True,
                self.server.service, self.stats)))
        await asyncio.gather(*tasks)


    def serve(self):
        """Run forever (main.py calls this once start.py, the boot code, is gone)."""
        console, extra, wdt = self.boot
        self.boot = None
        try:
            asyncio.run(self._serve(console, extra))
        except KeyboardInterrupt:
            if wdt is not None:
                from firmware import watchdog
                watchdog.relax(compat.machine)
            raise

    async def _serve(self, console, extra):
        for coro in extra:
            asyncio.create_task(coro)
        await self.run(console=console)
