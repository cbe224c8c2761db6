# Boot-only code: read the config, bring up pins and network, wire the parts into an App.
# main() frees this module (and the config validator, and the multicast set-up) before the
# loop runs forever, so none of this code holds RAM afterwards.
import firmware
from firmware import VERSION, compat, log
from firmware.app import App, open_socket

CONFIG_ENV = "COAP_ALARM_CONFIG"   # host only: where the simulator puts its config.json


def load_config(path):
    # The validator is only needed at boot: drop it afterwards to give its RAM back.
    from firmware import config
    cfg = config.load(path)
    firmware.unload("config")
    return cfg


def wire(app, cfg, machine, sock, ip, on):
    """App.__init__: build the parts and connect them. The App keeps the few settings it needs
    at run time, not the config dict."""
    import random
    from firmware.alarm import Alarm
    from firmware.hardware import Input, Output
    from firmware.health import HealthResource, Uptime
    from firmware.resources import AlarmResource, WellKnownCore
    from firmware.server import Server
    app.port = cfg["port"]
    app.health_period = cfg["health_period_s"]
    # With multicast on a wildcard bind, the unicast socket follows our address (network_up).
    app.follow = cfg["multicast"] and cfg["bind"] == "0.0.0.0"
    app.alarm = Alarm(compat.ticks_ms, on)  # on: the state restored from flash
    app.uptime = Uptime(compat.ticks_ms)
    if machine is None:
        from firmware.simpins import SimPin as make_pin
        reset = rssi = None
    else:
        from firmware import board, net
        make_pin = board.pin_factory(machine)
        reset = board.reset_cause(machine)
        rssi = net.rssi
    app.output = Output(make_pin(cfg["output_pin"], "out"), cfg["output_active_high"])
    app.output.set(app.alarm.on)
    app.alarm.listeners.append(app.output.set)
    app.input = None
    if cfg["input_pin"] is not None:
        app.input = Input(make_pin(cfg["input_pin"], "in", cfg["input_pull"]),
                          cfg["input_active_low"], cfg["input_debounce_ms"], app._raise)
    app.alarm_resource = AlarmResource(app.alarm, cfg["max_payload"], app.uptime)
    app.health = HealthResource(app.uptime, VERSION, reset, rssi)
    resources = [app.alarm_resource, app.health]
    app.wkc = WellKnownCore(resources)
    resources.append(app.wkc)
    bind = cfg["bind"]
    group = cfg["multicast"]
    if group and bind == "0.0.0.0" and ip:
        # lwIP hands a group datagram to every wildcard-bound socket too: bind the unicast
        # socket to our own address so that only the group socket hears multicast.
        bind = ip
    app.bound = bind
    app.sock = sock if sock is not None else open_socket(bind, cfg["port"])
    app.rx = None          # the unicast receive task, replaced when the socket is
    app.group_sock = None
    if sock is None and (group or bind == "0.0.0.0"):
        app.group_sock = multicast(app, bind, group)
    app.server = Server(app.sock, cfg, resources, compat.ticks_ms, random.getrandbits)
    app.health.observers = app.server.observers
    app.alarm.listeners.append(app._changed)
    app.rd = None
    if cfg["rd_host"]:
        try:
            addr = compat.sockaddr(cfg["rd_host"], cfg["rd_port"])
        except OSError as e:
            log.warning("rd: cannot resolve %s: %s; not registering", cfg["rd_host"], e)
        else:
            from firmware.rd import RdClient
            app.rd = RdClient(app.server, addr, cfg["rd_ep"] or cfg["hostname"],
                              cfg["rd_lifetime_s"], app.wkc.render)
            app.server.client = app.rd
    compat.gc_early()


def multicast(app, bind, join):
    """Keep group traffic off the unicast socket; join the group. Returns the group socket or None."""
    from firmware import mcast
    if bind == "0.0.0.0":
        # Group requests must never reach the unicast socket, joined or not (no 4.04 floods).
        mcast.keep_wildcard_out(app.sock)
    sock = None
    if join:
        port = app.port
        try:
            sock = mcast.open_group_socket(port, bind)
            log.info("joined %s on port %d", mcast.GROUP, port)
        except OSError as e:  # no multicast route (yet): unicast keeps working
            log.warning("cannot join %s: %s", mcast.GROUP, e)
    firmware.unload("mcast")  # boot-only code: give its RAM back
    return sock


def main():
    """Bring everything up; return the App's serve(), to be called once this module is gone.

    main.py: `serve = start.main()`, drop its own reference to this module, then `serve()`.
    """
    path = compat.getenv(CONFIG_ENV, "config.json")
    cfg = load_config(path)
    log.set_level(cfg["log_level"])
    machine = compat.machine
    if machine is not None:
        # Boot steps only a board has: their code (and its names) never loads on the host.
        from firmware import board
        board.log_reset(machine)
    on = False
    store = None
    if cfg["persist"]:
        from firmware.persist import FILE, Store
        store = Store(path[:path.rfind("/") + 1] + FILE)  # next to config.json
        on = store.load()
    ip = link = None
    extra = []
    if machine is not None:
        ip, link = board.bring_up(cfg, machine, on, extra)
    app = App(cfg, machine, ip=ip, on=on)
    if link is not None:
        link.on_up = app.network_up  # e.g. re-register at the directory
    if store is not None:
        app.alarm.listeners.append(store.save)
    wdt = None
    if machine is not None:
        wdt = board.watchdog(machine, cfg["watchdog_s"], extra)
        firmware.unload("board")
    if machine is None:
        ip = "127.0.0.1" if cfg["bind"] == "0.0.0.0" else cfg["bind"]
    print("coap-alarm %s serving coap://%s:%d/alarm" % (VERSION, ip or "(waiting for Wi-Fi)", cfg["port"]))
    if machine is None:
        from firmware import simpins
        print("[sim] simulated pins: output GPIO%d, input %s. %s" % (
            cfg["output_pin"], "GPIO%d" % cfg["input_pin"] if cfg["input_pin"] is not None else "none",
            simpins.HELP))
    app.boot = (machine is None, extra, wdt)   # what serve() needs; nothing of this module
    firmware.unload("start")
    return app.serve
