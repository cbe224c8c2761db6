# main() on a board, run under CPython with a fake `machine` and a fake `network`: the order
# of boot (reset cause, restored output, then Wi-Fi, then watchdog) and what gets printed.
import json
import sys
import time
import types

import pytest

from firmware import app, compat, start
from harness import free_udp_port

EVENTS = []
AP_CONFIG = {}   # what the firmware set on the access point


class Pin:
    OUT, IN, PULL_UP, PULL_DOWN = 1, 0, 2, 1

    def __init__(self, number, mode, pull=None):
        self.number = number

    def value(self, v=None):
        if v is not None:
            EVENTS.append("GPIO%d=%d" % (self.number, v))
        return 1

    def irq(self, handler=None, trigger=None):
        pass


class WDT:
    def __init__(self, timeout):
        EVENTS.append("WDT(%d)" % timeout)

    def feed(self):
        pass


def fake_machine():
    return types.SimpleNamespace(Pin=Pin, WDT=WDT, reset_cause=lambda: 3, PWRON_RESET=1,
                                 HARD_RESET=2, WDT_RESET=3, DEEPSLEEP_RESET=4, SOFT_RESET=5)


class WLAN:
    def __init__(self, kind):
        self.kind = kind
        self.up = False

    def active(self, on=None):
        if on:
            EVENTS.append("%s active" % ("STA", "AP")[self.kind])

    def connect(self, ssid, password):
        EVENTS.append("connect %s" % ssid)
        self.up = True

    def disconnect(self):
        self.up = False

    def isconnected(self):
        return self.up

    def status(self):
        return 0

    def ifconfig(self, v=None):
        return ("10.0.0.7", "255.255.255.0", "10.0.0.1", "10.0.0.1")

    def config(self, *a, **kw):
        if kw:
            AP_CONFIG.update(kw)
        return b"\x00\x00\x00\x00\xab\xcd"


@pytest.fixture
def board(tmp_path, monkeypatch):
    EVENTS.clear()
    AP_CONFIG.clear()
    network = types.SimpleNamespace(STA_IF=0, AP_IF=1, WLAN=WLAN,
                                    hostname=lambda n: EVENTS.append("hostname " + n))
    monkeypatch.setitem(sys.modules, "network", network)
    monkeypatch.setattr(compat, "machine", fake_machine())
    monkeypatch.setattr(time, "sleep_ms", lambda ms: None, raising=False)
    ran = []

    def fake_run(coro):
        ran.append(coro)
        for extra in coro.cr_frame.f_locals["extra"]:
            extra.close()
        coro.close()  # the loop itself is tested elsewhere; here: what main() set up
    monkeypatch.setattr(app.asyncio, "run", fake_run)

    def boot(text=None, **cfg):
        # text: config.json as it is on the board (e.g. damaged); else made from cfg.
        cfg.setdefault("bind", "127.0.0.1")
        cfg.setdefault("port", free_udp_port())
        path = tmp_path / "config.json"
        path.write_text(json.dumps(cfg) if text is None else text)
        monkeypatch.setenv("COAP_ALARM_CONFIG", str(path))
        ran.clear()
        start.main()()  # as main.py does: bring up, then serve
        assert len(ran) == 1
        return cfg
    return boot


def test_station_boot_order(board, tmp_path, capsys):
    (tmp_path / "alarm_state.json").write_text('{"on": true}')
    cfg = board(wifi_ssid="home", wifi_password="secret123", persist=True, input_pin=None,
                watchdog_s=20)
    out = capsys.readouterr().out
    assert "reset cause: wdt" in out
    # The restored ON reaches the pin before any Wi-Fi work; the watchdog starts last.
    assert EVENTS.index("GPIO2=1") < EVENTS.index("STA active") < EVENTS.index("connect home") \
        < EVENTS.index("WDT(20000)")
    assert "hostname coap-alarm" in EVENTS
    assert "coap-alarm 0.1.0 serving coap://10.0.0.7:%d/alarm" % cfg["port"] in out


def test_access_point_boot_and_no_watchdog_when_off(board, capsys):
    cfg = board(input_pin=None, watchdog_s=0)
    out = capsys.readouterr().out
    assert "access point coap-alarm-ABCD (WPA2), address 192.168.4.1" in out
    assert "serving coap://192.168.4.1:%d/alarm" % cfg["port"] in out
    assert EVENTS.index("GPIO2=0") < EVENTS.index("AP active")
    assert not any(e.startswith("WDT") for e in EVENTS)


def test_a_wifi_driver_error_does_not_stop_the_alarm(board, monkeypatch, capsys):
    def broken(kind):
        raise OSError("Wifi Internal Error")
    monkeypatch.setattr(sys.modules["network"], "WLAN", broken)
    cfg = board(wifi_ssid="home", wifi_password="secret123", input_pin=None)
    out = capsys.readouterr().out
    assert "Wi-Fi: cannot start (OSError('Wifi Internal Error'))" in out
    assert "serving coap://(waiting for Wi-Fi):%d/alarm" % cfg["port"] in out


def test_the_watchdog_task_watches_the_served_app(board, monkeypatch):
    # The task that feeds the watchdog also resets a deaf board (watchdog.Ears): it must watch
    # the app that serves, with the configured limit.
    from firmware import watchdog
    seen = []

    async def idle():
        pass

    def feed(wdt, every_ms, sleep=None, ears=None):
        seen.append(ears)
        return idle()
    monkeypatch.setattr(watchdog, "feed", feed)
    cfg = board(input_pin=None, watchdog_s=20)
    (ears,) = seen
    assert ears.limit == 20 and ears.machine is compat.machine
    assert ears.app.port == cfg["port"] and ears.app.sock.getsockname()[1] == cfg["port"]


# -- the access point is never open (issue 10, finding 8) ---------------------------------

def test_without_any_password_the_access_point_gets_one_made_for_this_board(board, tmp_path, capsys):
    import re
    board(input_pin=None)
    out = capsys.readouterr().out
    password = AP_CONFIG["password"]
    assert AP_CONFIG["authmode"] == 3 and re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{4}){3}", password)
    # The owner reads it on the console, and it is kept on the board, written atomically.
    assert "the access point's password is %s (made for this board, kept in" % password in out
    assert (tmp_path / "ap_password.txt").read_text() == password + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ap_password.txt", "config.json", "config.last.json"]
    # The same password after a reboot: a phone that joined once joins again.
    board(input_pin=None)
    assert AP_CONFIG["password"] == password
    assert "the access point's password is %s" % password in capsys.readouterr().out
    # A damaged file: a new password, said on the console.
    (tmp_path / "ap_password.txt").write_bytes(b"\xff\x00short")
    board(input_pin=None)
    assert AP_CONFIG["password"] != password
    assert "the access point's password is %s" % AP_CONFIG["password"] in capsys.readouterr().out


def test_a_configured_ap_password_is_used_and_not_printed(board, tmp_path, capsys):
    board(input_pin=None, ap_password="my own passphrase")
    out = capsys.readouterr().out
    assert AP_CONFIG["password"] == "my own passphrase" and AP_CONFIG["authmode"] == 3
    assert "my own passphrase" not in out
    assert not (tmp_path / "ap_password.txt").exists()


def test_a_damaged_config_falls_back_to_the_last_good_one_not_to_an_open_network(board, tmp_path, capsys):
    # A good config (its own AP password) is kept; then config.json is cut short, as by a
    # power cut during a copy: the board boots on the last good one, and says so.
    board(input_pin=None, ap_password="my own passphrase", output_pin=4)
    capsys.readouterr()
    board(text='{"ap_password": "my own pass')
    out = capsys.readouterr().out
    assert "config: %s is not valid JSON" % (tmp_path / "config.json") in out
    assert "using the last good config, %s" % (tmp_path / "config.last.json") in out
    assert AP_CONFIG["password"] == "my own passphrase"
    assert "GPIO4=0" in EVENTS            # the last good config's pins, not the defaults
