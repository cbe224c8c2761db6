# Where the alarm meets GPIO: an output pin follows the state; an input pin raises the alarm.
# The pin interrupt only sets a flag; debouncing and the state change happen in the loop.
from firmware import log
from firmware.compat import ThreadSafeFlag, sleep_ms


class Output:
    """The siren, relay or LED: driven to the alarm state, with configurable polarity."""

    def __init__(self, pin, active_high):
        self.pin = pin
        self.active_high = active_high

    def set(self, on, source=None):
        self.pin.value(1 if on == self.active_high else 0)


class Input:
    """A button, door contact or PIR that raises the alarm when active, debounced."""

    def __init__(self, pin, active_low, debounce_ms, on_active):
        self.pin = pin
        self.active_low = active_low
        self.debounce_ms = debounce_ms
        self.on_active = on_active
        self.flag = ThreadSafeFlag()
        self.armed = True  # fires once per activation; released pin re-arms
        pin.irq(handler=self._irq, trigger=3)  # both edges (IRQ_FALLING | IRQ_RISING)

    def _irq(self, pin):
        # Interrupt context: no allocation, no work; just wake the loop.
        self.flag.set()

    def active(self):
        return self.pin.value() == (0 if self.active_low else 1)

    async def run(self):
        while True:
            await self.flag.wait()
            # An exception (a listener's, a full heap's) costs this press, never the task: a
            # dead task would leave the button deaf until the next reset.
            try:
                await sleep_ms(self.debounce_ms)
                if self.active():
                    if self.armed:
                        self.armed = False
                        log.info("input pin active: raising the alarm")
                        self.on_active()
                else:
                    self.armed = True
            except Exception:  # a constant: logging may need the memory that is missing
                print("E input task failed; going on")
