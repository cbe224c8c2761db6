# Simulated GPIO for the host: output levels are printed, input pins are driven from the console.
import sys


class SimPin:
    def __init__(self, number, mode, pull=None):
        self.number = number
        self.mode = mode
        # An input with a pull-up idles high, like the ESP32's BOOT button.
        self.level = 1 if pull == "up" else 0
        self.handler = None

    def value(self, v=None):
        if v is None:
            return self.level
        v = 1 if v else 0
        if v != self.level or self.mode == "out":
            self.level = v
            if self.mode == "out":
                print("[sim] output GPIO%d = %d" % (self.number, v))
        return None

    def irq(self, handler=None, trigger=None):
        self.handler = handler

    def drive(self, level):
        """Set an input's level from outside, firing its interrupt on a change."""
        level = 1 if level else 0
        if level != self.level:
            self.level = level
            if self.handler:
                self.handler(self)
