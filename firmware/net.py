# Wi-Fi on a board. On the host the OS has the network and none of this runs.
# Link.step() is the whole station policy (connect, time out, back off, notice a drop) and
# never sleeps, so the tests drive it with a fake WLAN and a fake clock.
from firmware import log
from firmware.compat import sleep_ms, ticks_add, ticks_diff, ticks_ms

AP_IP = "192.168.4.1"        # the access point's own address (the ESP32 default)
AP_PREFIX = "coap-alarm-"    # + the last 4 hex digits of the MAC, e.g. coap-alarm-1A2B
POLL_MS = 250                # while an attempt is under way
CHECK_MS = 2000              # while connected: how soon a dropped link is noticed
BACKOFF_MS = 1000            # the wait after a failed attempt, doubled each time...
BACKOFF_MAX_MS = 60000       # ...up to this

_IDLE, _CONNECTING, _UP, _WAIT = 0, 1, 2, 3


class Link:
    """Keeps a station connected: retries with backoff, reconnects after a drop."""

    def __init__(self, wlan, ssid, password, port, timeout_ms, clock=ticks_ms, failures=None):
        self.wlan = wlan
        self.ssid = ssid
        self.password = password
        self.port = port
        self.timeout_ms = timeout_ms
        self.clock = clock
        self.failures = failures or {}  # wlan.status() codes that end an attempt early -> why
        self.state = _IDLE
        self.since = 0                  # when the attempt started, or when the wait ends
        self.backoff = BACKOFF_MS
        self.attempts = 0
        self.ip = None
        self.on_up = None               # called after each (re)connection

    def up(self):
        return self.state == _UP

    def step(self):
        """Do what is due now; return the ms until step() wants to run again."""
        now = self.clock()
        wlan = self.wlan
        if self.state == _UP:
            if wlan.isconnected():
                return CHECK_MS
            log.warning("Wi-Fi: lost the link to %s; reconnecting", self.ssid)
            self.ip = None
            self.state = _IDLE
        elif wlan.isconnected():
            return self._connected()  # also when the driver got there on its own
        if self.state == _WAIT:
            left = ticks_diff(self.since, now)
            if left > 0:
                return left
            self.state = _IDLE
        if self.state == _IDLE:
            return self._attempt(now)
        # Connecting.
        why = self.failures.get(wlan.status())
        if why is None and ticks_diff(now, self.since) >= self.timeout_ms:
            why = "no connection after %d s" % (self.timeout_ms // 1000)
        if why is None:
            return POLL_MS
        return self._failed(now, why)

    def _connected(self):
        self.ip = self.wlan.ifconfig()[0]
        self.state = _UP
        self.backoff = BACKOFF_MS
        self.attempts = 0
        print("Wi-Fi: connected to %s, IP address %s" % (self.ssid, self.ip))
        print("coap-alarm: observe coap://%s:%d/alarm" % (self.ip, self.port))
        if self.on_up is not None:
            self.on_up(self.ip)
        return CHECK_MS

    def _attempt(self, now):
        self.attempts += 1
        log.info("Wi-Fi: connecting to %s (attempt %d)", self.ssid, self.attempts)
        try:
            self.wlan.disconnect()  # stop the driver's own retries before starting ours
        except OSError:
            pass
        try:
            self.wlan.connect(self.ssid, self.password)
        except OSError as e:
            return self._failed(now, repr(e))
        self.state = _CONNECTING
        self.since = now
        return POLL_MS

    def _failed(self, now, why):
        wait = self.backoff
        try:
            self.wlan.disconnect()  # a quiet backoff: no driver retries meanwhile
        except OSError:
            pass
        log.warning("Wi-Fi: %s: %s; next attempt in %d s", self.ssid, why, wait // 1000)
        self.state = _WAIT
        self.since = ticks_add(now, wait)
        self.backoff = min(wait * 2, BACKOFF_MAX_MS)
        return wait

    def wait_up(self, timeout_ms, sleep):
        """At boot: step until connected or timeout_ms passed (blocking). True if up."""
        start = self.clock()
        while True:
            wait = self.step()
            if self.up():
                return True
            left = timeout_ms - ticks_diff(self.clock(), start)
            if left <= 0:
                return False
            sleep(min(wait, left))

    async def run(self, sleep=sleep_ms):
        # The task that keeps the link up while the CoAP loop runs.
        while True:
            await sleep(self.step())


def failures(network):
    """The station status codes of this port that mean "this attempt failed"."""
    out = {}
    for name, why in (("STAT_WRONG_PASSWORD", "wrong password"),
                      ("STAT_NO_AP_FOUND", "no network with that name"),
                      ("STAT_CONNECT_FAIL", "connection failed"),
                      ("STAT_HANDSHAKE_TIMEOUT", "handshake timed out (wrong password?)"),
                      ("STAT_ASSOC_FAIL", "association failed"),
                      ("STAT_BEACON_TIMEOUT", "the network stopped answering")):
        code = getattr(network, name, None)
        if code is not None:
            out[code] = why
    return out


def ap_name(mac):
    return "%s%02X%02X" % (AP_PREFIX, mac[-2], mac[-1])


def start_ap(network, cfg):
    """No SSID configured: be an access point a phone can join. Returns its name."""
    # Never open: the boot (start.load_config) gives it a password made for this board when
    # none is configured. Without one: no access point (board.bring_up logs it).
    if not cfg["ap_password"]:
        raise OSError("no ap_password: the access point is never open")
    ap = network.WLAN(network.AP_IF)
    ap.active(True)
    name = ap_name(ap.config("mac"))
    ap.config(essid=name, password=cfg["ap_password"], authmode=getattr(network, "AUTH_WPA2_PSK", 3))
    ap.ifconfig((AP_IP, "255.255.255.0", AP_IP, AP_IP))
    print("Wi-Fi: no wifi_ssid configured; access point %s (WPA2), address %s" % (name, AP_IP))
    print("coap-alarm: join %s, then observe coap://%s:%d/alarm" % (name, AP_IP, cfg["port"]))
    return name


def start(cfg, network=None):
    """Bring the interface up (no waiting). Returns a Link to keep up, or None in AP mode."""
    if network is None:
        import network
    try:
        network.hostname(cfg["hostname"])
    except (AttributeError, ValueError, OSError) as e:
        log.warning("Wi-Fi: cannot set hostname %s: %r", cfg["hostname"], e)
    if not cfg["wifi_ssid"]:
        start_ap(network, cfg)
        return None
    network.WLAN(network.AP_IF).active(False)
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    return Link(wlan, cfg["wifi_ssid"], cfg["wifi_password"], cfg["port"],
                cfg["wifi_timeout_s"] * 1000, failures=failures(network))


def rssi():
    """The station's signal strength in dBm (for /health)."""
    import network
    return network.WLAN(network.STA_IF).status("rssi")
