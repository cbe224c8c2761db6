# Every setting and every limit, with its default, in one place. config.json on the board overrides.
import json
import os

DEFAULTS = {
    # Network
    "wifi_ssid": "",            # empty: start an access point instead (see net.py)
    "wifi_password": "",
    "wifi_timeout_s": 15,       # one connection attempt; failures retry with backoff
    "ap_password": "",          # access point mode; empty: one made for this board (never open)
    "hostname": "coap-alarm",
    "bind": "0.0.0.0",
    "port": 5683,
    # Hardware. ESP32 DevKit: on-board LED on GPIO2, BOOT button on GPIO0.
    "output_pin": 2,
    "output_active_high": True,
    "input_pin": 0,             # None: no input pin
    "input_pull": "up",         # "up", "down" or None
    "input_active_low": True,
    "input_debounce_ms": 50,
    # Limits (memory is fixed by these; nothing else grows)
    "max_observers": 8,         # observer table slots
    "observers_per_endpoint": 2,  # slots one endpoint (address and port) may hold
    "observers_per_address": 4,   # slots one IP address (any ports) may hold
    "dedup_entries": 16,        # duplicate-detection cache (responses kept per endpoint+MID)
    "max_payload": 64,          # largest request body accepted (bytes); bigger gets 4.13
    "max_datagram": 1152,       # receive buffer (RFC 7252 4.6)
    # Observe upkeep
    "notify_con_every": 5,      # at least every Nth notification is confirmable
    "keepalive_s": 120,         # a CON notification at least this often, even without change
    # Behaviour
    "log_level": "info",        # "debug", "info", "warning", "error"
    "persist": False,           # keep the alarm state across reboots (written on change only)
    "watchdog_s": 30,           # board only: reset if the loop hangs this long; 0 turns it off
    # Discovery and fleets (docs/discovery.md)
    "multicast": True,          # join All-CoAP-Nodes 224.0.1.187 and answer discovery
    "multicast_leisure_ms": 2000,  # random delay before a multicast response (RFC 7252 8.2)
    "health_period_s": 60,      # /health observers hear from us this often
    "rd_host": "",              # Resource Directory address; empty: do not register
    "rd_port": 5683,
    "rd_ep": "",                # endpoint name at the directory; empty: the hostname
    "rd_lifetime_s": 3600,      # registration lifetime; refreshed at 3/4 of it
    # Security: OSCORE (RFC 8613), one security context per client (docs/design.md)
    "oscore": [],               # [{"name", "secret", "salt", "sender_id", "recipient_id"}], hex
    "unprotected": None,        # unprotected requests may: "read", "none" (discovery only), "all";
    #                             null: "read" with a context, else "all" (the only choice then)
}

# The limits that only matter with an "oscore" context: checked like the others (SCHEMA), and in
# the config only when there is a context (each key of the config dict is RAM while a board boots).
OSCORE_DEFAULTS = {
    "oscore_max_contexts": 4,   # contexts at most (about 0.6 KB of heap each, 32-bit)
    "oscore_window": 32,        # replay window (sequence numbers), as aiocoap's
    "oscore_seq_step": 1024,    # sender sequence numbers reserved per write of oscore_seq.json
}

# Few module-level names: each one's name would stay interned (RAM) after the module is freed.


def _gpio(v):
    # ESP32 GPIOs. 6-11 exist but drive the SPI flash; 34-39 are inputs only, without pulls.
    return 0 <= v <= 39 and v not in (20, 24, 28, 29, 30, 31) and not 6 <= v <= 11


# key: (type or tuple of types, check or None, what a good value looks like), or for an integer
# just (lowest, highest): fewer functions and strings to load at boot.


SCHEMA = {
    "wifi_ssid": (str, lambda v: len(v) <= 32, "a string of at most 32 characters"),
    "wifi_password": (str, lambda v: len(v) == 0 or 8 <= len(v) <= 64, "empty, or 8 to 64 characters"),
    "wifi_timeout_s": (1, 120),
    "ap_password": (str, lambda v: len(v) == 0 or 8 <= len(v) <= 63,
                    "empty (one made for this board), or a WPA2 passphrase of 8 to 63 characters"),
    "hostname": (str, lambda v: 0 < len(v) <= 32, "a non-empty string of at most 32 characters"),
    "bind": (str, lambda v: len(v) > 0, "an IP address such as 0.0.0.0"),
    "port": (1, 65535),
    "output_pin": (int, lambda v: _gpio(v) and v < 34,
                   "an ESP32 GPIO that can drive an output (0, 2, 4, 5, 12-19, 21-23, 25-27, 32-33)"),
    "output_active_high": (bool, None, "true or false"),
    "input_pin": ((int, type(None)), lambda v: v is None or _gpio(v),
                  "an ESP32 GPIO (0, 2, 4, 5, 12-19, 21-23, 25-27, 32-39), or null"),
    "input_pull": ((str, type(None)), lambda v: v in ("up", "down", None), '"up", "down" or null'),
    "input_active_low": (bool, None, "true or false"),
    "input_debounce_ms": (0, 10000),
    "max_observers": (1, 64),
    "observers_per_endpoint": (1, 64),
    "observers_per_address": (1, 64),
    "dedup_entries": (1, 256),
    "max_payload": (16, 1024),
    "max_datagram": (64, 1500),
    "notify_con_every": (1, 100),
    "keepalive_s": (10, 86400),
    "log_level": (str, lambda v: v in ("debug", "info", "warning", "error"),
                  "one of debug, info, warning, error"),
    "persist": (bool, None, "true or false"),
    "watchdog_s": (int, lambda v: v == 0 or 5 <= v <= 3600, "0 (off), or an integer from 5 to 3600"),
    "multicast": (bool, None, "true or false"),
    "multicast_leisure_ms": (0, 60000),
    "health_period_s": (1, 86400),
    "rd_host": (str, lambda v: len(v) <= 64, "an IP address or host name, or empty"),
    "rd_port": (1, 65535),
    "rd_ep": (str, lambda v: len(v) <= 63, "a string of at most 63 characters"),
    "rd_lifetime_s": (4, 86400),
    "oscore": (list, None, "a list of security contexts"),
    "unprotected": ((str, type(None)), lambda v: v is None or v in "read none all".split(),
                    '"read", "none", "all" or null'),
    "oscore_max_contexts": (1, 16),
    "oscore_window": (32, 256),
    "oscore_seq_step": (16, 65536),
}


def validate(raw, report=print):
    """Merge `raw` over DEFAULTS. Each bad or unknown key is reported and its default kept."""
    cfg = dict(DEFAULTS)
    if not isinstance(raw, dict):
        report("config: expected a JSON object, got %s; using defaults" % type(raw).__name__)
        return cfg
    for key in raw:
        value = raw[key]
        rule = SCHEMA.get(key)
        if rule is None:
            report("config: unknown key %s ignored" % json.dumps(key))
            continue
        if len(rule) == 2:  # an integer range
            types, check, want = int, None, "an integer from %d to %d" % rule
        else:
            types, check, want = rule
        if not isinstance(types, tuple):
            types = (types,)
        # bool is an int in Python: never accept true/false where a number belongs.
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if ok and check is not None:
            ok = check(value)
        if ok and len(rule) == 2:
            ok = rule[0] <= value <= rule[1]
        if ok:
            cfg[key] = value
        else:
            # JSON spelling (false, null, "x"): what the user writes in config.json.
            report("config: %s = %s is not %s; using default %s"
                   % (key, json.dumps(value), want, json.dumps(DEFAULTS.get(key, OSCORE_DEFAULTS.get(key)))))
    # Pins that exist but are not free. GPIO1/3 are UART0, the serial link of the REPL, mpremote
    # and deploy. Strapping pins are read at reset: whatever is wired to them must not hold
    # them the wrong way then (the DevKit's LED on 2 and BOOT button on 0 are made for it).
    for key in ("output_pin", "input_pin"):
        pin = cfg[key]
        if pin == 1 or pin == 3:
            report("config: %s = %d is %s, the serial link of the REPL and deploy: using it "
                   "cuts that link; using default %s"   # (no string of 10 characters or less: RAM)
                   % (key, pin, "UART0 transmit" if pin == 1 else "UART0 receive", json.dumps(DEFAULTS[key])))
            cfg[key] = DEFAULTS[key]
        elif pin in (0, 2, 5, 12, 15) and pin != DEFAULTS[key] and (
                key == "output_pin" or pin != cfg["output_pin"]):
            report("config: warning: %s %d is a strapping pin: held %s; mind what it is wired to"
                   % (key, pin, {
                       0: "low at reset, the board starts its bootloader instead of the alarm",
                       2: "high at reset, the board cannot be flashed",
                       5: "low at reset, it changes the SDIO timing",
                       12: "high at reset, the flash gets 1.8 V and the board does not boot",
                       15: "low at reset, the boot messages are silenced"}[pin]))
    if cfg["oscore"] or cfg["unprotected"] not in (None, "all"):
        # OSCORE's checks (config_oscore.py) load only when it is configured, and go again (RAM
        # at boot; a module name in an import statement would stay interned even if not loaded).
        import firmware
        __import__("firmware.config_oscore", None, None, ("validate",)).validate(cfg, report, OSCORE_DEFAULTS)
        firmware.unload("config_oscore")
    # Keys that are fine alone but not together.
    pin = cfg["input_pin"]
    if pin is not None and pin == cfg["output_pin"]:
        report("config: input_pin %d is also the output_pin; input disabled" % pin)
        cfg["input_pin"] = None
    elif pin is not None and pin >= 34 and cfg["input_pull"] is not None:  # input-only GPIOs
        report("config: GPIO%d has no internal pull resistor; input_pull set to null "
               "(fit an external resistor)" % pin)
        cfg["input_pull"] = None
    return cfg


def read(path):
    """(the JSON object in the file, its bytes), or (None, why it cannot be used); (None, None):
    there is no such file."""
    try:
        with open(path, "rb") as f:  # bytes: bad UTF-8 is then a JSON error, not a crash
            text = f.read()
    except OSError:
        return None, None
    except MemoryError:
        return None, "%s is too big to read" % path
    try:
        raw = json.loads(text)
    except ValueError as e:
        return None, "%s is not valid JSON (%s)" % (path, e)
    except Exception as e:  # e.g. MemoryError on a huge or deeply nested file: still boot
        return None, "cannot read %s (%r)" % (path, e)
    if not isinstance(raw, dict):
        return None, "expected a JSON object in %s, got %s" % (path, type(raw).__name__)
    return raw, text


def save(path, data):
    """Write a small file atomically, as persist.py writes the state: a temporary file, then a
    rename, so a power cut leaves the old file or the new one, never half of one. Raises
    OSError (e.g. a full flash)."""
    tmp = path + ".unfinished"  # (a literal of 10 characters or less would stay interned: RAM)
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:  # FAT cannot rename over a file; littlefs (the ESP32 default) and POSIX can
        os.remove(path)
        os.rename(tmp, path)


def load(path="config.json", report=print, board=False):
    """Read config.json. Missing file: defaults. A damaged file (not valid JSON, not an
    object): reported, and the last good config, config.last.json next to it, is used; without
    one, the defaults. config.last.json is written after a good load, only when it changed.

    board: this is a board, so an empty ap_password gets the password made for this board."""
    raw, text = read(path)
    if raw is not None:
        cfg = validate(raw, report)  # first, as it always was: where it lands matters at 64k
        path = path[:path.rfind("/") + 1] + "config.last.json"
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            raw = None
        if raw != text:  # not kept yet, or changed: keep this good one
            try:
                save(path, text)
            except OSError as e:
                report("config: cannot keep a copy of it in %s (%r)" % (path, e))
    elif text is None:
        report("config: no %s; using defaults" % path)
        cfg = dict(DEFAULTS)
    else:
        path = path[:path.rfind("/") + 1] + "config.last.json"
        raw = read(path)[0]
        if raw is None:
            report("config: %s; using defaults" % text)
            cfg = dict(DEFAULTS)
        else:
            report("config: %s; using the last good config, %s" % (text, path))
            cfg = validate(raw, report)
    if board and not cfg["wifi_ssid"] and not cfg["ap_password"]:
        # The board's own access point is never open. Its password when none is configured:
        # made once for this board from 80 random bits (os.urandom: the ESP32's hardware
        # generator), kept in ap_password.txt next to config.json, printed at every boot.
        path = path[:path.rfind("/") + 1] + "ap_password.txt"
        try:
            with open(path, "rb") as f:
                text = f.read().strip()
        except OSError:
            text = b""
        if not 8 <= len(text) <= 63 or any(c < 33 or c > 126 for c in text):  # none, or damaged
            data = getattr(os, "urandom", None)
            if data is not None:
                data = data(16)
            else:  # a port without os.urandom
                import random
                data = bytes(random.getrandbits(8) for _ in range(16))
            # 16 of 32 letters and digits that cannot be mistaken for each other (no l, o, 0,
            # 1), in groups of four, easy to type on a phone: abcd-efgh-jkmn-pqrs.
            abc = b"abcdefghijkmnpqrstuvwxyz23456789"
            text = bytearray()
            for i in range(16):
                if i and i % 4 == 0:
                    text.append(45)  # "-"
                text.append(abc[data[i] & 31])
            text = bytes(text)
            try:
                save(path, text + b"\n")
            except OSError as e:
                report("config: cannot keep the access point password in %s (%r); a new one is "
                       "made at the next boot" % (path, e))
        cfg["ap_password"] = text.decode()
        print("config: no ap_password configured: the access point's password is %s (made for "
              "this board, kept in %s)" % (cfg["ap_password"], path))
    if cfg["unprotected"] in (None, "all"):   # null: no oscore context, so "all"
        print("WARNING: no access control: anyone on the network can switch this alarm off "
              "(README, Security)")
    return cfg
