# Boot-only code: read the config, bring up pins and network, build the parts and hand them
# to App. main() frees this module (and the config validator, and board.py) before the loop
# runs forever, so none of this code holds RAM afterwards. docs/design.md.
import gc

if hasattr(gc, "threshold"):  # MicroPython: collect often while booting, so garbage goes
    gc.threshold(1024)        # early and holes stay large (a 64k heap boots at 62k, not 64k)
import firmware  # noqa: E402
from firmware import VERSION, compat, log  # noqa: E402
from firmware.app import App, multicast, open_socket
from firmware.compat import const

# Room for header, token and options on top of the largest accepted body. The receive buffer
# is that big and no bigger: a 1152-byte buffer per datagram fragments a small heap (RFC 7252
# 4.6 sets no minimum a server must accept). A datagram that fills it is answered 4.13.
_RX_HEADROOM = const(192)
_ROOMY_FREE = const(18 * 1024)  # this much free near the end of the boot: load every format and filter
_OSCORE_FREE = const(23 * 1024)  # the OSCORE layer, loaded after the build, plus 512 B a key
#   (64-bit: one key 86k, four 89k; aiocoap's client reads, writes and observes through it from a
#   heap about 1k smaller, but where exactly shifts with fragmentation: docs/performance.md)
_PERSIST_FREE = const(42 * 1024)  # persist: free before it loads (64-bit: a heap of 67k)
_RD_FREE = const(11 * 1024)  # RD client: this much free (64-bit: a heap of 71k, 74k with persist)


def load_config(path):
    # The validator is only needed at boot: drop it afterwards to give its RAM back.
    from firmware import config
    cfg = config.load(path, print, compat.machine is not None)  # a board: its AP password
    firmware.unload("config")
    del config
    import gc
    gc.collect()  # now, before anything is loaded on top of its RAM: less fragmentation
    return cfg


def stack(sock, cfg, clock, rand):
    """The three CoAP layers over one socket: (endpoint, site, observe). docs/design.md."""
    from firmware.endpoint import Endpoint
    from firmware.messages import DedupCache, Outbox
    from firmware.observe import Observe
    from firmware.site import Site
    ep = Endpoint(sock, clock, rand, DedupCache(cfg["dedup_entries"]), Outbox(cfg["max_observers"] + 1, rand),
                  min(cfg["max_datagram"], cfg["max_payload"] + _RX_HEADROOM), cfg["multicast_leisure_ms"])
    observe = Observe(ep, cfg["max_observers"], cfg["notify_con_every"], cfg["keepalive_s"] * 1000,
                      cfg["observers_per_endpoint"] | cfg["observers_per_address"] << 8)
    return ep, Site(ep, observe, cfg["max_payload"]), observe


def build(cfg, machine=None, sock=None, ip=None, on=False, store=None):
    """Build every part from the config and return the App that runs them.

    The CoAP layers come first: their tables are the largest allocations, and they find room
    best right after the config validator has been freed, before more code is loaded (a 64k
    heap fragments: later a 400-byte table may find no hole big enough)."""
    import random
    from firmware.hardware import Input, Output
    port = cfg["port"]
    bind = cfg["bind"]
    group = cfg["multicast"]
    if group and bind == "0.0.0.0" and ip:
        # lwIP hands a group datagram to every wildcard-bound socket too: bind the unicast
        # socket to our own address so that only the group socket hears multicast.
        bind = ip
    group_sock = None
    if sock is None:
        sock = open_socket(bind, port)
        if group or bind == "0.0.0.0":
            group_sock = multicast(sock, bind, port, group)
    ep, site, observe = stack(sock, cfg, compat.ticks_ms, random.getrandbits)
    import gc
    gc.collect()   # boot garbage out now, before code loads on top of it: fewer, larger holes
    from firmware.alarm import Alarm
    from firmware.res_health import Uptime
    alarm = Alarm(compat.ticks_ms, on)  # on: the state restored from flash
    uptime = Uptime(compat.ticks_ms)
    # What the resources are made from: make(parts) in each resource module.
    parts = {"cfg": cfg, "alarm": alarm, "uptime": uptime, "observe": observe, "version": VERSION,
             "reset": None, "rssi": None, "store": store}
    if machine is not None:
        from firmware import board
        parts["reset"], parts["rssi"] = board.health(machine)
        make_pin = board.pin_factory(machine)
    else:
        from host.simpins import SimPin as make_pin
    health = None
    # The resources, in the order /.well-known/core lists them; each module has make(parts).
    # Adding a resource: one new file with a make(), and its name in this tuple.
    for name in ("res_alarm", "res_health"):
        res = site.add(__import__("firmware." + name, None, None, ("make",)).make(parts))
        if name == "res_health":
            health = res
    gc.collect()
    from firmware.site import WellKnownCore
    wkc = site.add(WellKnownCore(site.routes[:]))
    output = Output(make_pin(cfg["output_pin"], "out"), cfg["output_active_high"])
    output.set(alarm.on)
    alarm.listeners.append(output.set)
    inp = None
    if cfg["input_pin"] is not None:
        inp = Input(make_pin(cfg["input_pin"], "in", cfg["input_pull"]),
                    cfg["input_active_low"], cfg["input_debounce_ms"], None)
    rd = None
    # What is free now, everything but the App built. Only a fixed heap (the unix port, the
    # board-heap model) is held to it: an ESP32 grows its heap from the IDF's when it must, and
    # CPython has no limit. docs/design.md, rule 5.
    gc.collect()
    heap = gc.mem_free() if machine is None and hasattr(gc, "mem_free") else _ROOMY_FREE
    if cfg["rd_host"]:
        if heap < _RD_FREE:  # README, "rd_host"; a failed import would fragment the heap
            print("rd_host: %d KB free, %d KB needed: not registering" % (heap >> 10, _RD_FREE >> 10))
        else:
            from firmware import rd as rd_mod
            rd = rd_mod.attach(ep, cfg, wkc.render)
    parts = None
    gc.collect()
    app = App(ep, observe, alarm, port, bind, follow=group and cfg["bind"] == "0.0.0.0", group_sock=group_sock,
              health=health, health_period=cfg["health_period_s"], uptime=uptime, input=inp, rd=rd)
    if inp is not None:
        inp.on_active = app.press
    if heap >= _ROOMY_FREE + (_OSCORE_FREE if cfg["oscore"] else 0):
        # Everything else a request can reach, loaded now: no request ever imports code (a
        # failed import on a full heap left a 64k board deaf). In a smaller heap those requests
        # (JSON, CBOR, /health, Block1, discovery filters) get 5.03. docs/design.md, rule 5.
        for name in ("firmware.blockwise", "firmware.formats", "firmware.cbor", "firmware.cbor_read",
                     "firmware.linkformat"):
            __import__(name)
    compat.gc_early()
    return app


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
    if cfg["persist"] and machine is None and hasattr(gc, "mem_free") and gc.mem_free() < _PERSIST_FREE:
        # A fixed heap too small for it (README, "persist"): say so and serve without it.
        print("persist: %d KB free, %d KB needed: state not kept" % (gc.mem_free() >> 10, _PERSIST_FREE >> 10))
    elif cfg["persist"]:
        from firmware import persist
        store = persist.Store(path[:path.rfind("/") + 1] + persist.FILE)  # next to config.json
        on = store.load()
    ip = link = None
    extra = []
    if machine is not None:
        ip, link = board.bring_up(cfg, machine, on, extra)
    app = build(cfg, machine, ip=ip, on=on, store=store)
    if link is not None:
        link.on_up = app.network_up  # e.g. re-register at the directory
    if cfg["oscore"]:
        # OSCORE in front of the site: its code loads only with a context; its boot part goes again.
        gc.collect()
        need = _OSCORE_FREE + (len(cfg["oscore"]) << 9)
        if machine is None and hasattr(gc, "mem_free") and gc.mem_free() < need:
            # A fixed heap too small for it: stop, never serve open what was meant to be protected.
            print("oscore: %d KB free, %d KB needed: not serving" % (gc.mem_free() >> 10, (need + 1023) >> 10))
            raise SystemExit(1)
        __import__("firmware.oscore_boot", None, None, ("make",)).make(app, cfg, path[:path.rfind("/") + 1])
    if store is not None:
        app.alarm.listeners.append(store.save)
    wdt = None
    if machine is not None:
        wdt = board.watchdog(machine, cfg["watchdog_s"], extra, app)
        firmware.unload("board")
    if machine is None:
        ip = "127.0.0.1" if cfg["bind"] == "0.0.0.0" else cfg["bind"]
    print("coap-alarm %s serving coap://%s:%d/alarm" % (VERSION, ip or "(waiting for Wi-Fi)", cfg["port"]))
    console = None
    if machine is None:
        from host import console as simconsole
        print("[sim] simulated pins: output GPIO%d, input %s. %s" % (
            cfg["output_pin"], "GPIO%d" % cfg["input_pin"] if cfg["input_pin"] is not None else "none",
            simconsole.HELP))
        console = simconsole.console
    app.boot = (console, extra, wdt)   # what serve() needs; nothing of this module
    firmware.unload("start")
    return app.serve
