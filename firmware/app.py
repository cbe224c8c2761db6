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


class App:
    def __init__(self, cfg, machine=None, sock=None):
        # Imported here, not at the top: main() validates the config and frees the validator
        # first, so boot's peak RAM never holds both.
        from firmware.alarm import Alarm
        from firmware.hardware import Input, Output, pin_factory
        from firmware.resources import AlarmResource, WellKnownCore
        from firmware.server import Server
        self.cfg = cfg
        self.alarm = Alarm(compat.ticks_ms)
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
        compat.gc_early()

    def _raise(self):
        self.alarm.set(True, "pin")
        self.server.service()

    def _changed(self, on, source):
        log.info("alarm %s (%s)", "ON" if on else "OFF", source)
        self.server.changed(self.alarm_resource)

    async def receive(self):
        server = self.server
        sock = self.sock
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
                server.datagram(data, addr)
                if not more():
                    break
            if server.pending:
                server.service()

    async def timers(self):
        while True:
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
        tasks = [asyncio.create_task(self.receive()), asyncio.create_task(self.timers())]
        if self.input is not None:
            tasks.append(asyncio.create_task(self.input.run()))
        if console:
            from firmware import simpins
            tasks.append(asyncio.create_task(simpins.console(
                self.alarm, self.input.pin if self.input else None, self.cfg["input_active_low"],
                self.server.service, self.stats)))
        await asyncio.gather(*tasks)


def load_config():
    # The validator is only needed at boot: drop it afterwards to give its RAM back.
    import sys
    from firmware import config
    cfg = config.load(compat.getenv(CONFIG_ENV, "config.json"))
    del sys.modules["firmware.config"]
    import firmware
    del firmware.config  # the package holds it too: without this the module stays alive
    return cfg


def main():
    cfg = load_config()
    log.set_level(cfg["log_level"])
    machine = compat.machine
    ip = None
    if machine is not None:
        from firmware import net
        ip = net.start(cfg)
    app = App(cfg, machine)
    host = ip or ("127.0.0.1" if cfg["bind"] == "0.0.0.0" else cfg["bind"])
    print("coap-alarm %s serving coap://%s:%d/alarm" % (VERSION, host, cfg["port"]))
    if machine is None:
        from firmware import simpins
        print("[sim] simulated pins: output GPIO%d, input %s. %s" % (
            cfg["output_pin"], "GPIO%d" % cfg["input_pin"] if cfg["input_pin"] is not None else "none",
            simpins.HELP))
    asyncio.run(app.run(console=machine is None))
