# Wi-Fi bring-up with a fake WLAN and a fake clock: timeouts, backoff, reconnects, AP mode.
# Nothing here really sleeps: the fake sleeps move the fake clock.
import asyncio

import pytest

from firmware import config, net
from harness import FakeClock

WRONG_PASSWORD = 202


class FakeWLAN:
    """A station interface. `link` says whether the network would accept a connect()."""

    def __init__(self, clock, join_ms=300):
        self.clock = clock
        self.join_ms = join_ms      # how long an accepted connect() takes
        self.link = True
        self.status_code = 1000     # STAT_IDLE
        self.connects = []          # clock times of connect() calls
        self.connected_at = None
        self.active_state = False
        self.fail_connect = False

    def active(self, on=None):
        if on is not None:
            self.active_state = on
        return self.active_state

    def connect(self, ssid, password):
        if self.fail_connect:
            raise OSError("Wifi Internal Error")
        self.connects.append(self.clock.now)
        self.connected_at = self.clock.now + self.join_ms if self.link else None

    def disconnect(self):
        self.connected_at = None

    def isconnected(self):
        return self.link and self.connected_at is not None and self.clock.now >= self.connected_at

    def status(self):
        return self.status_code

    def ifconfig(self):
        return ("192.168.1.42", "255.255.255.0", "192.168.1.1", "192.168.1.1")

    def drop(self):
        self.link = False
        self.connected_at = None


def make_link(clock, wlan, timeout_ms=5000):
    return net.Link(wlan, "home", "secret123", 5683, timeout_ms, clock=clock,
                    failures={WRONG_PASSWORD: "wrong password"})


def run_until(link, clock, until_ms, limit=10000):
    """Step the link like its task would, the fake clock jumping over each wait."""
    for _ in range(limit):
        if clock.now >= until_ms:
            return
        clock.advance(link.step())
    raise AssertionError("runaway loop")


def test_connects_and_prints_ip_and_url(capsys):
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    link = make_link(clock, wlan)
    run_until(link, clock, 2000)
    assert link.up() and link.ip == "192.168.1.42"
    assert len(wlan.connects) == 1
    out = capsys.readouterr().out
    assert "Wi-Fi: connected to home, IP address 192.168.1.42" in out
    assert "coap://192.168.1.42:5683/alarm" in out


def test_timeouts_retry_with_doubling_backoff_capped(capsys):
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    wlan.link = False
    link = make_link(clock, wlan, timeout_ms=5000)
    run_until(link, clock, 600000)
    gaps = [b - a for a, b in zip(wlan.connects, wlan.connects[1:])]
    # Each attempt waits out the 5 s timeout, then 1, 2, 4, ... 60 s (never more).
    waits = [g - 5000 for g in gaps]
    assert waits[:7] == [1000, 2000, 4000, 8000, 16000, 32000, 60000]
    assert max(waits) == 60000 and all(w == 60000 for w in waits[6:])
    assert not link.up()
    assert "no connection after 5 s; next attempt in 1 s" in capsys.readouterr().out


def test_a_failure_status_ends_the_attempt_early(capsys):
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    wlan.link = False
    wlan.status_code = WRONG_PASSWORD
    link = make_link(clock, wlan, timeout_ms=5000)
    run_until(link, clock, 3000)
    assert wlan.connects[:2] == [0, 250 + 1000]   # one poll, then the 1 s backoff
    assert "home: wrong password; next attempt in 1 s" in capsys.readouterr().out


def test_connect_raising_backs_off_instead_of_crashing(capsys):
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    wlan.fail_connect = True
    link = make_link(clock, wlan)
    assert link.step() == 1000
    assert "Wifi Internal Error" in capsys.readouterr().out
    wlan.fail_connect = False
    run_until(link, clock, 3000)
    assert link.up()


def test_reconnects_after_a_drop_and_backoff_starts_over(capsys):
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    link = make_link(clock, wlan, timeout_ms=5000)
    run_until(link, clock, 1000)
    assert link.up()
    wlan.drop()
    run_until(link, clock, 40000)        # the access point is away: attempts back off
    assert not link.up() and len(wlan.connects) >= 4
    wlan.link = True
    run_until(link, clock, 200000)
    assert link.up()
    out = capsys.readouterr().out
    assert "lost the link to home; reconnecting" in out
    assert out.count("IP address 192.168.1.42") == 2
    # After success the next outage starts again from the shortest wait.
    wlan.drop()
    first = len(wlan.connects)
    run_until(link, clock, clock.now + 2000 + 5000 + 1000 + 1)
    assert len(wlan.connects) - first == 2


def test_drop_is_noticed_within_the_check_interval():
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    link = make_link(clock, wlan)
    run_until(link, clock, 1000)
    dropped = clock.now
    wlan.drop()
    wlan.link = True
    run_until(link, clock, dropped + net.CHECK_MS + 1)
    assert wlan.connects[-1] - dropped <= net.CHECK_MS


def test_wait_up_at_boot_is_bounded_without_real_sleeping():
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    wlan.link = False
    link = make_link(clock, wlan, timeout_ms=5000)
    assert link.wait_up(15000, clock.advance) is False
    assert clock.now == 15000
    clock2 = FakeClock(0)
    link2 = make_link(clock2, FakeWLAN(clock2))
    assert link2.wait_up(15000, clock2.advance) is True
    assert clock2.now < 1000


def test_run_task_keeps_the_link_up_with_a_fake_sleep():
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    link = make_link(clock, wlan)
    wlan.link = False

    async def fake_sleep(ms):
        clock.advance(ms)
        if clock.now > 30000:
            wlan.link = True
        if clock.now > 200000:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(link.run(fake_sleep))
    assert link.up()


# -- start(): station or access point, with a fake `network` module -----------------------

class FakeIf:
    def __init__(self, kind):
        self.kind = kind
        self.on = False
        self.cfg = {"mac": b"\x24\x0a\xc4\x12\x1a\x2b"}
        self.ip = None

    def active(self, on=None):
        if on is not None:
            self.on = on
        return self.on

    def config(self, *args, **kw):
        if args:
            return self.cfg[args[0]]
        self.cfg.update(kw)

    def ifconfig(self, v=None):
        self.ip = v


class FakeNetwork:
    STA_IF, AP_IF = 0, 1
    AUTH_OPEN, AUTH_WPA2_PSK = 0, 3
    STAT_WRONG_PASSWORD, STAT_NO_AP_FOUND = 202, 201

    def __init__(self):
        self.ifs = {0: FakeIf(0), 1: FakeIf(1)}
        self.host = None

    def WLAN(self, kind):
        return self.ifs[kind]

    def hostname(self, name):
        self.host = name


def cfg(**kw):
    c = dict(config.DEFAULTS)
    c.update(kw)
    return c


def test_without_ssid_a_wpa2_access_point_at_the_documented_address(capsys):
    nw = FakeNetwork()
    assert net.start(cfg(ap_password="abcd-efgh-jkmn-pqrs"), nw) is None
    ap = nw.ifs[nw.AP_IF]
    assert ap.on and ap.cfg["essid"] == "coap-alarm-1A2B" and ap.cfg["authmode"] == nw.AUTH_WPA2_PSK
    assert ap.cfg["password"] == "abcd-efgh-jkmn-pqrs"
    assert ap.ip[0] == "192.168.4.1"
    assert nw.host == "coap-alarm"
    out = capsys.readouterr().out
    assert "access point coap-alarm-1A2B (WPA2), address 192.168.4.1" in out
    assert "observe coap://192.168.4.1:5683/alarm" in out
    assert "abcd-efgh-jkmn-pqrs" not in out   # a configured password is never printed


def test_the_access_point_is_never_open():
    # Without a password (the boot always gives it one): no access point at all.
    nw = FakeNetwork()
    with pytest.raises(OSError, match="never open"):
        net.start(cfg(), nw)
    assert not nw.ifs[nw.AP_IF].on


def test_with_ssid_a_station_link_that_knows_the_ports_failure_codes():
    nw = FakeNetwork()
    link = net.start(cfg(wifi_ssid="home", wifi_password="secret123", hostname="siren",
                         wifi_timeout_s=7), nw)
    assert nw.ifs[nw.STA_IF].on and not nw.ifs[nw.AP_IF].on
    assert nw.host == "siren"
    assert link.ssid == "home" and link.timeout_ms == 7000
    assert link.failures == {202: "wrong password", 201: "no network with that name"}


def test_a_connection_the_driver_makes_during_the_backoff_is_kept():
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    wlan.link = False
    link = make_link(clock, wlan, timeout_ms=5000)
    run_until(link, clock, 5500)             # first attempt failed: waiting 1 s
    assert len(wlan.connects) == 1 and not link.up()
    wlan.link = True
    wlan.connected_at = clock.now            # the ESP32 driver's own retry succeeded
    link.step()
    assert link.up() and len(wlan.connects) == 1   # not torn down by a needless reconnect


def test_each_reconnection_is_announced_to_the_app():
    clock = FakeClock(0)
    wlan = FakeWLAN(clock)
    link = make_link(clock, wlan)
    ups = []
    link.on_up = ups.append   # with the address the network gave us
    run_until(link, clock, 1000)
    wlan.drop()
    wlan.link = True
    run_until(link, clock, 10000)
    assert ups == [wlan.ifconfig()[0]] * 2
