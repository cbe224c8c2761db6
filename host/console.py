# The simulator's console (make sim): commands typed on stdin drive the simulated input pin and
# the alarm, and `stats` reports the heap and the tables. Host-only; loaded after the boot has
# built everything (so it adds nothing to the boot's peak in a small heap).
import sys

HELP = "commands: press, release (drive the input pin), on, off (set the alarm), state, stats, help"


def command(line, alarm, input_pin, active_low, stats=None):
    """One console command from the simulator's user. Returns the text to print."""
    word = line.strip().lower()
    if not word:
        return ""
    if word in ("press", "release"):
        if input_pin is None:
            return "no input pin configured"
        active = word == "press"
        input_pin.drive((0 if active else 1) if active_low else (1 if active else 0))
        return "input GPIO%d %sd" % (input_pin.number, word if word.endswith("e") else word + "e")
    if word in ("on", "off"):
        alarm.set(word == "on", "console")
        return "alarm " + word.upper()
    if word == "state":
        return "alarm " + ("ON" if alarm.on else "OFF")
    if word == "stats" and stats is not None:
        return stats()  # heap and table fill: what the host tests check after a storm
    return HELP


def stats(app):
    """The `stats` line: heap after a collection, and how full each table is."""
    import gc
    gc.collect()
    try:
        used, free = gc.mem_alloc(), gc.mem_free()
    except AttributeError:  # CPython has no such figures
        used = free = -1
    ep = app.endpoint
    obs = app.observe
    return "stats heap=%d free=%d observers=%d/%d dedup=%d/%d outbox=%d received=%d malformed=%d" % (
        used, free, len(obs), obs.capacity, len(ep.dedup), ep.dedup.capacity, len(ep.outbox),
        ep.received, ep.malformed)


async def console(app):
    """Read commands from stdin until it closes. Never stalls the server: it reads only the
    bytes that are there, one read at a time, and a partial line waits here for the rest while
    the loop goes on serving. The endpoint's service() runs once per command."""
    from firmware.compat import pending, readable
    alarm = app.alarm
    input_pin = app.input.pin if app.input else None
    active_low = app.input.active_low if app.input else True
    src = sys.stdin.buffer
    src = getattr(src, "raw", src)  # CPython: unbuffered, so select() sees every unread byte
    more = pending(sys.stdin)
    line = b""
    while True:
        await readable(sys.stdin)
        while True:
            c = src.read(1)
            if c == b"\n" or not c:
                try:
                    word = line.decode()
                except UnicodeError:
                    word = "?"  # not a command: the help text
                line = b""
                out = command(word, alarm, input_pin, active_low, lambda: stats(app))
                if out:
                    print("[sim] " + out)
                app.endpoint.service()
                if not c:
                    return  # stdin closed: keep serving, just without a console
            elif len(line) < 200:  # a command is one short word
                line += c
            if not more():
                break
