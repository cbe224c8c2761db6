# Staying up: watchdog fed by the loop, reset cause named, a failing handler answers 5.00.
import asyncio

import pytest

from firmware import config, watchdog
from host import coapmsg as coap
from firmware.alarm import Alarm
from firmware.res_alarm import AlarmResource
from firmware.res_health import Uptime
from harness import FakeClock, FakeSocket, Stack, request


class FakeWDT:
    def __init__(self, timeout):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class FakeMachine:
    PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5

    def __init__(self, cause=3):
        self.cause = cause
        self.wdts = []

    def reset_cause(self):
        return self.cause

    def WDT(self, timeout):
        w = FakeWDT(timeout)
        self.wdts.append(w)
        return w


@pytest.mark.parametrize("code, name", [(1, "pwron"), (3, "wdt"), (5, "soft"), (9, "9")])
def test_reset_cause_is_named(code, name):
    # One reset cause, in one spelling: the boot log and /health say the same word.
    from firmware import board
    assert board.reset_cause(FakeMachine(code)) == name


def test_no_watchdog_on_the_host_or_when_turned_off():
    assert watchdog.start(None, 30) is None
    assert watchdog.start(FakeMachine(), 0) is None


def test_watchdog_started_with_the_configured_timeout_and_fed_by_the_loop():
    m = FakeMachine()
    wdt = watchdog.start(m, 30)
    assert wdt.timeout == 30000
    slept = []

    async def fake_sleep(ms):
        slept.append(ms)
        if len(slept) == 5:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(watchdog.feed(wdt, 1000, fake_sleep))
    assert wdt.feeds == 5 and slept == [1000] * 5


def test_relax_stretches_the_watchdog_for_the_repl(capsys):
    m = FakeMachine()
    watchdog.relax(m)
    assert m.wdts[-1].timeout == 3600000
    assert "stretched to 1 hour" in capsys.readouterr().out


def test_relax_says_so_when_the_port_cannot(capsys):
    class Stubborn(FakeMachine):
        def WDT(self, timeout):
            raise ValueError("cannot change")
    watchdog.relax(Stubborn())
    assert "watchdog still running" in capsys.readouterr().out


class Broken(AlarmResource):
    def handle(self, req, fmt):
        if req.payload == b"boom":
            raise ZeroDivisionError("bug")
        return AlarmResource.handle(self, req, fmt)


def test_handler_exception_answers_5_00_and_the_server_keeps_serving(capsys):
    clock = FakeClock()
    sock = FakeSocket()
    server = Stack(sock, dict(config.DEFAULTS), clock)
    server.add(Broken(Alarm(clock), Uptime(clock)))
    peer = ("127.0.0.1", 40000)
    server.datagram(request(coap.PUT, payload=b"boom", mid=1), peer)
    (msg, _), = sock.take()
    assert msg.code == coap.INTERNAL_SERVER_ERROR and msg.mid == 1
    assert "handler for /alarm failed" in capsys.readouterr().out
    server.datagram(request(coap.PUT, payload=b"ON", mid=2), peer)
    (msg, _), = sock.take()
    assert msg.code == coap.CHANGED and msg.payload == b"ON"
