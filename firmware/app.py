# Wires the parts together and runs them on one asyncio loop.
import asyncio
import random
import socket

from firmware import VERSION, compat, log

CONFIG_ENV = "COAP_ALARM_CONFIG"   # host only: where the simulator puts its config.json


def open_socket(bind, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(compat.sockaddr(bind, port))
    sock.setblocking(False)
    return sock


def _rssi():
    import network
    return network.WLAN(network.STA_IF).status("rssi")


class App:
    def __init__(self, cfg, machine=None, sock=None, ip=None, on=False):
        # Imported here, not at the top: main() validates the config and frees the validator
        # first, so boot's peak RAM never holds both.
        from firmware.alarm import Alarm
        from firmware.hardware import Input, Output, pin_factory
        from firmware.health import HealthResource, Uptime
        from firmware.resources import AlarmResource, WellKnownCore
        from firmware.server import Server
        self.cfg = cfg
        self.alarm = Alarm(compat.ticks_ms, on)  # on: the state restored from flash
        self.uptime = Uptime(compat.ticks_ms)
        make_pin = pin_factory(machine)
        self.output = Output(make_pin(cfg["output_pin"], "out"), cfg["output_active_high"])
        self.output.set(self.alarm.on)
        self.alarm.listeners.append(self.output.set)
        self.input = None
        if cfg["input_pin"] is not None:
            self.input = Input(make_pin(cfg["input_pin"], "in", cfg["input_pull"]),
                               cfg["input_active_low"], cfg["input_debounce_ms"], self._raise)
        self.alarm_resource = AlarmResource(self.alarm, cfg["max_payload"], self.uptime)
        self.health = HealthResource(self.uptime, VERSION, machine, _rssi if machine else None)
        resources = [self.alarm_resource, self.health]
        self.wkc = WellKnownCore(resources)
        resources.append(self.wkc)
        bind = cfg["bind"]
        group = cfg["multicast"]
        if group and bind == "0.0.0.0" and ip:
            # lwIP hands a group datagram to every wildcard-bound socket too: bind the unicast
            # socket to our own address so that only the group socket hears multicast.
            bind = ip
        self.bound = bind
        self.sock = sock if sock is not None else open_socket(bind, cfg["port"])
        self.rx = None          # the unicast receive task, replaced when the socket is
        self.group_sock = None
        if sock is None and (group or bind == "0.0.0.0"):
            self.group_sock = self._multicast(bind, group)
        self.server = Server(self.sock, cfg, resources, compat.ticks_ms, random.getrandbits)
        self.health.observers = self.server.observers
        self.alarm.listeners.append(self._changed)
        self.rd = None
        if cfg["rd_host"]:
            try:
                addr = compat.sockaddr(cfg["rd_host"], cfg["rd_port"])
            except OSError as e:
                log.warning("rd: cannot resolve %s: %s; not registering", cfg["rd_host"], e)
            else:
                from firmware.rd import RdClient
                self.rd = RdClient(self.server, addr, cfg["rd_ep"] or cfg["hostname"],
                                   cfg["rd_lifetime_s"], lambda: self.wkc.render(40))
                self.server.client = self.rd
        compat.gc_early()

    def _multicast(self, bind, join):
        import sys
        from firmware import mcast
        if bind == "0.0.0.0":
            # Group requests must never reach the unicast socket, joined or not (no 4.04 floods).
            mcast.keep_wildcard_out(self.sock)
        sock = None
        if join:
            port = self.cfg["port"]
            try:
                sock = mcast.open_group_socket(port, bind)
                log.info("joined %s on port %d", mcast.GROUP, port)
            except OSError as e:  # no multicast route (yet): unicast keeps working
                log.warning("cannot join %s: %s", mcast.GROUP, e)
        # Boot-only code: give its RAM back (the package keeps a reference too).
        del sys.modules["firmware.mcast"]
        import firmware
        del firmware.mcast
        return sock

    def _raise(self):
        self.alarm.set(True, "pin")
        self.server.service()

    def _changed(self, on, source):
        log.info("alarm %s (%s)", "ON" if on else "OFF", source)
        self.server.changed(self.alarm_resource)

    def network_up(self, ip=None):
        """Call when the network (re)connects, with our address: DHCP may have given a new one,
        and the directory may have lost us meanwhile."""
        cfg = self.cfg
        if ip and cfg["multicast"] and cfg["bind"] == "0.0.0.0" and ip != self.bound and self.rx:
            self._rebind(ip)
        if self.rd is not None:
            self.rd.restart()

    def _rebind(self, ip):
        # The unicast socket is bound to our address (see __init__): follow the new one.
        try:
            sock = open_socket(ip, self.cfg["port"])
        except OSError as e:
            log.error("cannot listen on %s: %s", ip, e)
            return
        log.info("address changed: now serving coap://%s:%d/alarm", ip, self.cfg["port"])
        self.rx.cancel()
        self.sock.close()
        self.sock = self.server.sock = sock
        self.bound = ip
        self.rx = asyncio.create_task(self.receive(sock))
        if self.group_sock is None:  # Wi-Fi was not up at boot: join the group now
            self.group_sock = self._multicast(ip, True)
            if self.group_sock is not None:
                asyncio.create_task(self.receive(self.group_sock, True))

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
                server.datagram(data, addr, mcast)
                if not more():
                    break
            if server.pending:
                server.service()

    async def timers(self):
        period = self.cfg["health_period_s"]
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
            from firmware import simpins
            tasks.append(asyncio.create_task(simpins.console(
                self.alarm, self.input.pin if self.input else None, self.cfg["input_active_low"],
                self.server.service, self.stats)))
        await asyncio.gather(*tasks)


def load_config(path):
    # The validator is only needed at boot: drop it afterwards to give its RAM back.
    import sys
    import firmware
    from firmware import config
    cfg = config.load(path)
    # Both references must go: sys.modules and the package's attribute.
    sys.modules.pop("firmware.config", None)
    if hasattr(firmware, "config"):
        delattr(firmware, "config")
    return cfg


async def _serve(app, console, extra):
    for coro in extra:
        asyncio.create_task(coro)
    await app.run(console=console)


def _bring_up(cfg, machine, on, tasks):
    """On a board: drive the output, then the network. Returns (IP address or None, Link or None)."""
    from firmware import net
    from firmware.hardware import Output, pin_factory
    # The restored state reaches the pin first: Wi-Fi can take many seconds.
    Output(pin_factory(machine)(cfg["output_pin"], "out"), cfg["output_active_high"]).set(on)
    try:
        link = net.start(cfg)  # the station's interface, or the access point
    except OSError as e:  # a Wi-Fi driver error: the pins still work without a network
        log.error("Wi-Fi: cannot start (%r); running without a network", e)
        return None, None
    if link is None:
        return net.AP_IP, None
    tasks.append(link.run())  # keeps reconnecting while CoAP is served
    import time
    return (link.ip if link.wait_up(cfg["wifi_timeout_s"] * 1000, time.sleep_ms) else None), link


def main():
    path = compat.getenv(CONFIG_ENV, "config.json")
    cfg = load_config(path)
    log.set_level(cfg["log_level"])
    machine = compat.machine
    if machine is not None:
        from firmware import watchdog
        log.info("reset cause: %s", watchdog.reset_cause(machine))
    on = False
    store = None
    if cfg["persist"]:
        from firmware.persist import FILE, Store
        store = Store(path[:path.rfind("/") + 1] + FILE)  # next to config.json
        on = store.load()
    ip = link = None
    extra = []
    if machine is not None:
        ip, link = _bring_up(cfg, machine, on, extra)
    app = App(cfg, machine, ip=ip, on=on)
    if link is not None:
        link.on_up = app.network_up  # e.g. re-register at the directory
    if store is not None:
        app.alarm.listeners.append(store.save)
    wdt = None
    if machine is not None:
        wdt = watchdog.start(machine, cfg["watchdog_s"])
        if wdt is not None:
            extra.append(watchdog.feed(wdt, 1000))
    if machine is None:
        ip = "127.0.0.1" if cfg["bind"] == "0.0.0.0" else cfg["bind"]
    print("coap-alarm %s serving coap://%s:%d/alarm" % (VERSION, ip or "(waiting for Wi-Fi)", cfg["port"]))
    if machine is None:
        from firmware import simpins
        print("[sim] simulated pins: output GPIO%d, input %s. %s" % (
            cfg["output_pin"], "GPIO%d" % cfg["input_pin"] if cfg["input_pin"] is not None else "none",
            simpins.HELP))
    try:
        asyncio.run(_serve(app, machine is None, extra))
    except KeyboardInterrupt:
        if wdt is not None:
            watchdog.relax(machine)
        raise
