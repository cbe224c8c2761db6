# The running alarm: the receive loop, timers and run-time network changes, on one asyncio
# loop. start.build() makes the parts and hands them in; this module imports no boot code.
import asyncio
import socket

from firmware import compat, log
from firmware.compat import const

_IPPROTO_IP = const(0)          # the same everywhere; the unix port's socket module lacks the name
_IP_MULTICAST_ALL = const(49)   # Linux only
_RX_SMALL = const(64)           # the receive buffer when a whole one cannot be had: a plain request fits
_SERVICE_UNAVAILABLE = const(0xA3)



def open_socket(bind, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if compat.machine is not None:
        # The board rebinds to its new address after a change (network_up). Nowhere else: with
        # SO_REUSEADDR a second server would bind the same port and take part of the traffic.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(compat.sockaddr(bind, port))
    except OSError as e:
        sock.close()
        log.error("cannot serve on %s port %d: %s (another server?)", bind, port, e)
        if compat.machine is None:
            raise SystemExit(1)   # the host: one clear line, no traceback
        raise
    sock.setblocking(False)
    return sock


def multicast(sock, bind, port, join):
    """Keep group traffic off the unicast socket; join All-CoAP-Nodes (RFC 7252 12.8).
    Returns the group socket, or None."""
    if bind == "0.0.0.0":
        # Group requests must never reach the unicast socket, joined or not (no 4.04 floods).
        # Linux (IP_MULTICAST_ALL off): deliver just the groups a socket joined. Elsewhere the
        # board binds the unicast socket to its own address instead.
        try:
            sock.setsockopt(_IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        except OSError:
            pass
        # Let group sockets (ours, other group members on this host) share the wildcard port.
        # Set after the bind: a second server, binding without it, is still refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if not join:
        return None
    group = "224.0.1.187"
    try:
        # A receive-only socket bound to the group, so whatever it reads was sent to the group.
        # Replies go out of the unicast socket, from our own address.
        gs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        gs.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        gs.bind(compat.sockaddr(group, port))
        # struct ip_mreq: the group, then the interface's address (0.0.0.0: the default one).
        mreq = bytes([int(x) for x in (group + "." + bind).split(".")])
        gs.setsockopt(_IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        gs.setblocking(False)
    except OSError as e:  # no multicast route (yet): unicast keeps working
        log.warning("cannot join %s: %s", group, e)
        return None
    log.info("joined %s on port %d", group, port)
    return gs


class App:
    """The running alarm: receive loops, timers, and what changes at run time."""

    def __init__(self, endpoint, observe, alarm, port, bound, follow, group_sock, health,
                 health_period, uptime, input=None, rd=None):
        self.endpoint = endpoint
        self.observe = observe
        self.sock = endpoint.sock
        self.alarm = alarm
        self.port = port
        self.bound = bound          # the address the unicast socket is bound to
        self.follow = follow        # a wildcard bind with multicast: follow our address (network_up)
        self.group_sock = group_sock
        self.health = health        # notified every health_period s (or None)
        self.health_period = health_period
        self.uptime = uptime
        self.input = input
        self.rd = rd
        self.rx = None              # the unicast receive task, replaced when the socket is
        self.boot = None            # (console, extra tasks, watchdog): set by start.main()

    def press(self):
        # The input pin went active: raise the alarm, and tell observers now, not at the next tick.
        self.alarm.set(True, "pin")
        self.endpoint.service()

    def network_up(self, ip=None):
        """Call when the network (re)connects, with our address: DHCP may have given a new one,
        and the directory may have lost us meanwhile."""
        if ip and self.follow and ip != self.bound and self.rx:
            # The unicast socket is bound to our address (see start.build): follow the new one.
            try:
                sock = open_socket(ip, self.port)
            except OSError:
                sock = None   # open_socket said why; keep serving on the old address
            if sock is not None:
                log.info("address changed: now serving coap://%s:%d/alarm", ip, self.port)
                self.rx.cancel()
                self.sock.close()
                self.sock = self.endpoint.sock = sock
                self.bound = ip
                self.rx = asyncio.create_task(self.receive(sock))
                if self.group_sock is None:  # Wi-Fi was not up at boot: join the group now
                    self.group_sock = multicast(sock, ip, self.port, True)
                    if self.group_sock is not None:
                        asyncio.create_task(self.receive(self.group_sock, True))
        if self.rd is not None:
            self.rd.restart()

    async def receive(self, sock, mcast=False):
        ep = self.endpoint
        size = ep.rx_size  # what the endpoint accepts, not a full 1152-byte datagram
        more = compat.pending(sock)
        while True:
            # Nothing may end this task: the server would be deaf for good. The messages are
            # constants: print allocates nothing, and a full heap is the likely cause.
            try:
                await compat.readable(sock)
                # Drain a bounded batch, then let other tasks run. Asking first, instead of
                # reading until EAGAIN, saves an OSError and a receive buffer (~350 B) per batch.
                for _ in range(16):
                    try:
                        data, addr = sock.recvfrom(size)
                    except OSError:
                        break
                    except MemoryError:
                        # No room in one piece for a whole receive buffer (a fragmented heap,
                        # under a flood): take the datagram into a small one, so that a plain
                        # request is still served and the socket never stays full. What fills
                        # it may have been cut: 5.03, from its header (RFC 7252 5.9.3.4).
                        try:
                            data, addr = sock.recvfrom(_RX_SMALL)
                        except OSError:  # it was read, but its copy found no room: lost
                            break
                        if len(data) >= _RX_SMALL:
                            ep.full(data, addr, mcast, _SERVICE_UNAVAILABLE)
                            continue
                    try:
                        ep.receive(data, addr, mcast)
                    except OSError:
                        pass  # the reply could not be sent; it is cached for the retransmission
                    except Exception as e:  # a bug must cost one packet, never the loop
                        try:
                            log.error("datagram dropped: %r", e)
                        except MemoryError:  # nor does the message, when there is no room for it
                            pass
                    if not more():
                        break
                if ep.pending:
                    ep.service()
            except MemoryError:
                # A fragmented heap (in recvfrom, most likely: the datagram waits in the
                # socket). Shed the duplicate cache (what pins small objects), retry shortly.
                print("E MemoryError while receiving; retrying")
                ep.dedup.clear()
                await compat.sleep_ms(20)
            except Exception:
                print("E receive task failed; going on")
                await compat.sleep_ms(20)   # a fault that repeats must not starve the loop

    async def timers(self):
        period = self.health_period
        next_health = period
        while True:
            wait = 100
            try:
                # Also keeps Uptime clear of ticks wrap-around.
                if self.uptime() >= next_health:
                    next_health = self.uptime() + period
                    if self.health is not None:
                        self.health.notify()
                # Capped so that a new retransmission deadline is never missed by much.
                wait = min(self.endpoint.service(), 100)
            except Exception:  # this task is the server's own (run() awaits it): never end it
                print("E timers failed; going on")
            await compat.sleep_ms(wait)

    async def run(self, console=None):
        self.rx = asyncio.create_task(self.receive(self.sock))
        if self.group_sock is not None:
            asyncio.create_task(self.receive(self.group_sock, True))
        if self.input is not None:
            asyncio.create_task(self.input.run())
        if console is not None:
            asyncio.create_task(console(self))   # the simulator's (host/console.py)
        # The timers run in this task (no gather(): its module would cost a small heap ~1 KB).
        await self.timers()

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
