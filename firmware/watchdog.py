# Staying up on a board: the hardware watchdog fed by the running loop, and a watch on receive
# progress (the reset cause: board.py). Loaded on a board only.
from firmware import log
from firmware.compat import sleep_ms, pending

def start(machine, timeout_s):
    """Start machine.WDT; None when there is no hardware (host) or it is turned off."""
    if machine is None or not timeout_s or not hasattr(machine, "WDT"):
        return None
    log.info("watchdog: %d s", timeout_s)
    return machine.WDT(timeout=timeout_s * 1000)


class Ears:
    """Is the server still receiving? A datagram that waits in the socket while nothing is
    received for `limit` checks in a row (a heap too full to receive, a bug), or a receive task
    that ended, means deaf: check() resets the board, which comes back with its state restored
    (persist). A quiet network is not deafness: nothing waits in the socket then."""

    def __init__(self, app, machine, limit):
        self.app = app
        self.machine = machine
        self.limit = limit
        self.sock = None
        self.more = None
        self.last = -1       # the endpoint's count of received datagrams at the last check
        self.count = 0       # checks in a row with a datagram waiting and none received

    def check(self):
        app = self.app
        if app.sock is not self.sock:  # a new socket, after an address change
            self.sock = app.sock
            self.more = pending(app.sock)
        n = app.endpoint.received
        if n != self.last or not self.more():
            self.last = n
            self.count = 0
        else:
            self.count += 1
        if app.rx is not None and app.rx.done():
            print("E receive task ended: resetting")
        elif self.count >= self.limit:
            print("E nothing received while datagrams wait: resetting")
        else:
            return
        self.machine.reset()   # does not return on a board


async def feed(wdt, every_ms, sleep=sleep_ms, ears=None):
    # A task like any other: if the loop hangs, this stops running and the board resets.
    while True:
        wdt.feed()
        if ears is not None:
            try:
                ears.check()
            except Exception:  # e.g. a full heap: check again next time
                pass
        await sleep(every_ms)


def relax(machine):
    # After Ctrl-C (the REPL, mpremote): nothing feeds the watchdog any more, and an ESP32
    # watchdog cannot be stopped. Stretch it to an hour so the REPL and a deploy stay usable.
    try:
        machine.WDT(timeout=3600000)
        print("watchdog stretched to 1 hour for the REPL; press reset to restart the alarm")
    except Exception as e:  # a port that cannot reconfigure it: say so, do not hide it
        print("watchdog still running (%r): the board will reset soon" % (e,))
