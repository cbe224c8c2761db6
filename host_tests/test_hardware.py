# The GPIO binding, with simulated pins: output polarity and a debounced input.
import asyncio

import pytest

from firmware import hardware
from firmware.alarm import Alarm
from host.simpins import SimPin
from harness import FakeClock


@pytest.mark.parametrize("active_high, levels", [(True, [0, 1, 0]), (False, [1, 0, 1])])
def test_output_follows_alarm_with_polarity(active_high, levels):
    pin = SimPin(2, "out")
    out = hardware.Output(pin, active_high)
    alarm = Alarm(FakeClock())
    alarm.listeners.append(out.set)
    seen = []
    out.set(alarm.on)
    seen.append(pin.value())
    alarm.set(True, "t")
    seen.append(pin.value())
    alarm.set(False, "t")
    seen.append(pin.value())
    assert seen == levels


def run_input(active_low, script):
    """Drive an input pin; the debounce delay ends when the script says so, not by the clock."""
    async def scenario():
        gate = asyncio.Event()
        entered = asyncio.Event()

        async def debounce(ms):
            entered.set()
            await gate.wait()
            gate.clear()

        orig = hardware.sleep_ms
        hardware.sleep_ms = debounce
        raised = []
        pin = SimPin(0, "in", "up" if active_low else "down")
        inp = hardware.Input(pin, active_low, 50, lambda: raised.append(1))
        task = asyncio.create_task(inp.run())
        try:
            for step in script:
                if step == "settle":       # the debounce period ends now
                    await asyncio.wait_for(entered.wait(), 5)  # guard: a missing IRQ fails, not hangs
                    entered.clear()
                    gate.set()
                    for _ in range(3):
                        await asyncio.sleep(0)
                else:
                    pin.drive(step)
            return len(raised)
        finally:
            task.cancel()
            hardware.sleep_ms = orig
    return asyncio.run(scenario())


def test_press_raises_once_per_press():
    # active-low button: 0 is pressed
    assert run_input(True, [0, "settle"]) == 1
    assert run_input(True, [0, "settle", 1, "settle", 0, "settle"]) == 2


def test_bounce_shorter_than_debounce_is_ignored():
    assert run_input(True, [0, 1, "settle"]) == 0


def test_holding_the_button_raises_only_once():
    assert run_input(True, [0, "settle", 1, 0, "settle"]) == 1


def test_active_high_input():
    assert run_input(False, [1, "settle"]) == 1
    assert run_input(False, [1, 0, "settle"]) == 0
