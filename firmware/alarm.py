# The alarm state: ON or OFF, and who changed it last (res_alarm.py notes when). Listeners hear every change.
from firmware import log


class Alarm:
    def __init__(self, clock, on=False):
        self.clock = clock        # clock() -> ticks in ms
        self.on = on
        self.source = "boot"
        self.changes = 0
        self.listeners = []       # fn(on, source), called on change only

    def set(self, on, source):
        """Set the state; True if it changed."""
        on = bool(on)
        if on == self.on:
            return False
        self.on = on
        self.source = source
        self.changes += 1
        log.info("alarm %s (%s)", "ON" if on else "OFF", source)
        for fn in self.listeners:
            fn(on, source)
        return True
