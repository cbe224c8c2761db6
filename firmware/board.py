# Boot steps only a board has (start.py runs them when there is a `machine` with pins): the
# reset cause, real pins, Wi-Fi, the watchdog. Boot-only: start.py frees this module, and on
# the host it never loads, so neither its code nor its names take RAM there.
from firmware import log


def log_reset(machine):
    log.info("reset cause: %s", reset_cause(machine))


def reset_cause(machine):
    """The last reset cause as a word for /health ("wdt", ...), or None if the port has none."""
    if not hasattr(machine, "reset_cause"):
        return None
    cause = machine.reset_cause()
    for name in ("PWRON", "HARD", "WDT", "DEEPSLEEP", "SOFT"):
        if getattr(machine, name + "_RESET", None) == cause:
            return name.lower()
    return str(cause)


def health(machine):
    """What /health reports of the board: (reset cause, fn() -> RSSI)."""
    from firmware import net
    return reset_cause(machine), net.rssi


def pin_factory(machine):
    """Return make(number, mode, pull) for real pins."""
    Pin = machine.Pin
    pulls = {"up": Pin.PULL_UP, "down": Pin.PULL_DOWN}

    def make(number, mode, pull=None):
        if mode == "out":
            return Pin(number, Pin.OUT)
        if pull in pulls:
            return Pin(number, Pin.IN, pulls[pull])
        return Pin(number, Pin.IN)

    return make


def bring_up(cfg, machine, on, tasks):
    """Drive the output, then the network. Returns (IP address or None, Link or None)."""
    from firmware import net
    from firmware.hardware import Output
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


def watchdog(machine, timeout_s, tasks, app=None):
    """Start the hardware watchdog (None when off) and add the task that feeds it. With the
    app, that task also resets the board when the app has received nothing for timeout_s
    seconds while datagrams wait (watchdog.Ears)."""
    from firmware import watchdog
    wdt = watchdog.start(machine, timeout_s)
    if wdt is not None:
        ears = watchdog.Ears(app, machine, timeout_s) if app is not None else None
        tasks.append(watchdog.feed(wdt, 1000, ears=ears))
    return wdt
