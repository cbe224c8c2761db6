# Wires the parts together and runs them on one asyncio loop.
import asyncio
import random
import socket

from firmware import VERSION, compat, log
from firmware.alarm import Alarm
from firmware.hardware import Input, Output, pin_factory
from firmware.resources import AlarmResource, WellKnownCore
from firmware.server import Server

CONFIG_ENV = "COAP_ALARM_CONFIG"   # host only: where the simulator puts its config.json


def open_socket(bind, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(compat.sockaddr(bind, port))
    sock.setblocking(False)
    return sock


class App:
    def __init__(self, cfg, machine=None, sock=None, on=False):
        self.cfg = cfg
        self.alarm = Alarm(compat.ticks_ms, on)  # on: the state restored from flash
        make_pin = pin_factory(machine)
        self.output = Output(make_pin(cfg["output_pin"], "out"), cfg["output_active_high"])
        self.output.set(self.alarm.on)
        self.alarm.listeners.append(self.output.set)
        self.input = None
        if cfg["input_pin"] is not None:
            self.input = Input(make_pin(cfg["input_pin"], "in", cfg["input_pull"]),
                               cfg["input_active_low"], cfg["input_debounce_ms"], self._raise)
        self.alarm_resource = AlarmResource(self.alarm, cfg["max_payload"])
        resources = [self.alarm_resource]
        resources.append(WellKnownCore(resources))
        self.sock = sock if sock is not None else open_socket(cfg["bind"], cfg["port"])
        self.server = Server(self.sock, cfg, resources, compat.ticks_ms, random.getrandbits)
        self.alarm.listeners.append(self._changed)

    def _raise(self):
        self.alarm.set(True, "pin")
        self.server.service()

    def _changed(self, on, source):
        log.info("alarm %s (%s)", "ON" if on else "OFF", source)
        self.server.changed(self.alarm_resource)

    async def receive(self):
        server = self.server
        sock = self.sock
        size = self.cfg["max_datagram"]
        while True:
            await compat.readable(sock)
            # Drain a bounded batch, then let other tasks run.
            for _ in range(16):
                try:
                    data, addr = sock.recvfrom(size)
                except OSError:
                    break
                server.datagram(data, addr)
            if server.pending:
                server.service()

    async def timers(self):
        while True:
            # Capped so that a new retransmission deadline is never missed by much.
            await compat.sleep_ms(min(self.server.service(), 100))

    async def run(self, console=False):
        tasks = [asyncio.create_task(self.receive()), asyncio.create_task(self.timers())]
        if self.input is not None:
            tasks.append(asyncio.create_task(self.input.run()))
        if console:
            from firmware import simpins
            tasks.append(asyncio.create_task(simpins.console(
                self.alarm, self.input.pin if self.input else None, self.cfg["input_active_low"],
                self.server.service)))
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
    """On a board: drive the output, then the network. Returns the IP address, if known."""
    from firmware import net
    from firmware.hardware import Output, pin_factory
    # The restored state reaches the pin first: Wi-Fi can take many seconds.
    Output(pin_factory(machine)(cfg["output_pin"], "out"), cfg["output_active_high"]).set(on)
    link = net.start(cfg)  # the station's interface, or the access point
    if link is None:
        return net.AP_IP
    tasks.append(link.run())  # keeps reconnecting while CoAP is served
    import time
    return link.ip if link.wait_up(cfg["wifi_timeout_s"] * 1000, time.sleep_ms) else None


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
    ip = None
    extra = []
    if machine is not None:
        ip = _bring_up(cfg, machine, on, extra)
    app = App(cfg, machine, on=on)
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
