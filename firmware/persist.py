# The alarm state on flash, so that a reboot does not silence (or raise) the alarm.
# Written only on change, to spare the flash; written atomically: a temporary file, then a
# rename, so a power cut mid-write leaves the old or the new state, never a broken file.
import json
import os

from firmware import log

FILE = "alarm_state.json"


class Store:
    def __init__(self, path=FILE):
        self.path = path
        self.file = path + ".tmp"
        self.value = None   # what the file holds, so an unchanged state costs no write
        # (attribute names the VM has anyway: docs/design.md, RAM rule 3)
        self.error = None   # what /health reports as "store": None (ok), or what went wrong

    def load(self):
        """The saved state (True for ON); OFF when there is none or it cannot be read."""
        try:
            os.remove(self.file)  # left by a power cut mid-write: the real file is intact
            log.warning("persist: removed the unfinished %s", self.file)
        except OSError:
            pass
        try:
            f = open(self.path)
        except OSError:
            log.info("persist: no saved state yet; alarm starts OFF")
            self.error = "missing at boot"  # a first boot, or a lost file: until a save works
            return False
        try:
            with f:
                on = json.loads(f.read())["on"]
            if on is not True and on is not False:
                raise ValueError("on is not true or false")
        except Exception as e:  # whatever is in the file (even too much of it), the board boots
            log.error("persist: %s is corrupt (%r); alarm starts OFF", self.path, e)
            self.error = "damaged at boot"
            return False
        self.value = on
        log.info("persist: restored alarm %s", "ON" if on else "OFF")
        return on

    def save(self, on, source=None):
        """Alarm listener: write the new state. A flash error is logged, never raised."""
        if on == self.value:
            return
        try:
            with open(self.file, "w") as f:
                f.write('{"on": true}\n' if on else '{"on": false}\n')
            try:
                os.rename(self.file, self.path)
            except OSError:
                # FAT cannot rename over a file; littlefs (the ESP32 default) and POSIX can.
                os.remove(self.path)
                os.rename(self.file, self.path)
            self.value = on
            self.error = None
        except OSError as e:  # e.g. ENOSPC, a full filesystem: the 2.04 stands, /health says so
            log.error("persist: cannot save the state to %s: %r", self.path, e)
            self.error = "save failed"
