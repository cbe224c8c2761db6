# Boot-only code: read the config, bring up pins and network, wire the parts into an App.
# main() frees this module (and the config validator, and board.py) before the
# loop runs forever, so none of this code holds RAM afterwards.
import firmware
from firmware import VERSION, compat, log
from firmware.app import App, open_socket
from firmware.compat import const

_IPPROTO_IP = const(0)          # the same everywhere; the unix port's socket module lacks the name
_IP_MULTICAST_ALL = const(49)   # Linux only



def load_config(path):
    # The validator is only needed at boot: drop it afterwards to give its RAM back.
    from firmware import config
    cfg = config.load(path)
    firmware.unload("config")
    del config
    import gc
    gc.collect()  # now, before anything is loaded on top of its RAM: less fragmentation
    return cfg


def wire(app, cfg, machine, sock, ip, on):
    """App.__init__: build the parts and connect them. The App keeps the few settings it needs
    at run time, not the config dict.

    The server comes first: its tables are the largest allocations, and they find room best
    right after the config validator has been freed, before more code is loaded (a 64k heap
    fragments: later a 400-byte table may find no hole big enough)."""
    import random
    from firmware.hardware import Input, Output
    if machine is None:
        from host.simpins import SimPin as make_pin
    from firmware.server import Server
    app.port = cfg["port"]
    app.health_period = cfg["health_period_s"]
    # With multicast on a wildcard bind, the unicast socket follows our address (network_up).
    app.follow = cfg["multicast"] and cfg["bind"] == "0.0.0.0"
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
    app.server = server = Server(app.sock, cfg, (), compat.ticks_ms, random.getrandbits)
    from firmware.alarm import Alarm
    from firmware.health import HealthResource, Uptime
    from firmware.resources import AlarmResource, WellKnownCore
    app.alarm = Alarm(compat.ticks_ms, on)  # on: the state restored from flash
    app.uptime = Uptime(compat.ticks_ms)
    reset = rssi = None
    if machine is not None:
        from firmware import board
        reset, rssi = board.health(machine)
    app.alarm_resource = AlarmResource(app.alarm, cfg["max_payload"], app.uptime)
    app.health = HealthResource(app.uptime, VERSION, reset, rssi)
    resources = [app.alarm_resource, app.health]
    app.wkc = WellKnownCore(resources)
    resources.append(app.wkc)
    for r in resources:
        server.routes[r.path] = r
    app.health.observers = server.observers
    if machine is not None:
        make_pin = board.pin_factory(machine)
    app.output = Output(make_pin(cfg["output_pin"], "out"), cfg["output_active_high"])
    app.output.set(app.alarm.on)
    app.alarm.listeners.append(app.output.set)
    app.input = None
    if cfg["input_pin"] is not None:
        app.input = Input(make_pin(cfg["input_pin"], "in", cfg["input_pull"]),
                          cfg["input_active_low"], cfg["input_debounce_ms"], app._raise)
    app.alarm.listeners.append(app._changed)
    app.rd = None
    if cfg["rd_host"]:
        from firmware import rd
        rd.attach(app, cfg)
    compat.gc_early()


def multicast(app, bind, join):
    """Keep group traffic off the unicast socket; join All-CoAP-Nodes (RFC 7252 12.8).
    Returns the group socket, or None."""
    import socket
    if bind == "0.0.0.0":
        # Group requests must never reach the unicast socket, joined or not (no 4.04 floods).
        # Linux (IP_MULTICAST_ALL off): deliver just the groups a socket joined. Elsewhere the
        # board binds the unicast socket to its own address instead.
        try:
            app.sock.setsockopt(_IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        except OSError:
            pass
    if not join:
        return None
    group = "224.0.1.187"
    try:
        # A receive-only socket bound to the group, so whatever it reads was sent to the group.
        # Replies go out of the unicast socket, from our own address.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(compat.sockaddr(group, app.port))
        # struct ip_mreq: the group, then the interface's address (0.0.0.0: the default one).
        mreq = bytes([int(x) for x in (group + "." + bind).split(".")])
        sock.setsockopt(_IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError as e:  # no multicast route (yet): unicast keeps working
        log.warning("cannot join %s: %s", group, e)
        return None
    log.info("joined %s on port %d", group, app.port)
    return sock


def main():
    """Bring everything up; return the App's serve(), to be called once this module is gone.

    main.py: `serve = start.main()`, drop its own reference to this module, then `serve()`.
    """
    # COAP_ALARM_CONFIG (host only): where the simulator puts its config.json.
    path = compat.getenv("COAP_ALARM_CONFIG", "config.json")
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
        from firmware import persist
        store = persist.Store(path[:path.rfind("/") + 1] + persist.FILE)  # next to config.json
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
        from host import simpins
        print("[sim] simulated pins: output GPIO%d, input %s. %s" % (
            cfg["output_pin"], "GPIO%d" % cfg["input_pin"] if cfg["input_pin"] is not None else "none",
            simpins.HELP))
    app.boot = (machine is None, extra, wdt)   # what serve() needs; nothing of this module
    firmware.unload("start")
    return app.serve
