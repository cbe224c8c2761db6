# Staying up on a board: the hardware watchdog fed by the running loop (the reset cause: board.py).
from firmware import log
from firmware.compat import sleep_ms

def start(machine, timeout_s):
    """Start machine.WDT; None when there is no hardware (host) or it is turned off."""
    if machine is None or not timeout_s or not hasattr(machine, "WDT"):
        return None
    log.info("watchdog: %d s", timeout_s)
    return machine.WDT(timeout=timeout_s * 1000)


async def feed(wdt, every_ms, sleep=sleep_ms):
    # A task like any other: if the loop hangs, this stops running and the board resets.
    while True:
        wdt.feed()
        await sleep(every_ms)


def relax(machine):
    # After Ctrl-C (the REPL, mpremote): nothing feeds the watchdog any more, and an ESP32
    # watchdog cannot be stopped. Stretch it to an hour so the REPL and a deploy stay usable.
    try:
        machine.WDT(timeout=3600000)
        print("watchdog stretched to 1 hour for the REPL; press reset to restart the alarm")
    except Exception as e:  # a port that cannot reconfigure it: say so, do not hide it
        print("watchdog still running (%r): the board will reset soon" % (e,))
