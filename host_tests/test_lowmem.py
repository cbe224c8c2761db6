# At the board-sized heap the text/plain alarm runs with everything on; what needs more code
# (JSON, CBOR, /health, Block1, discovery filters) is not loaded there, and its requests get a
# clear 5.03 at once, not silence (no request ever imports code), and the alarm keeps serving.
import re

import pytest

from host import coapmsg as coap
from harness import BOARD_HEAP, free_udp_port


def test_first_use_features_at_board_heap_answer_or_say_503(firmware):
    fw = firmware(heap=BOARD_HEAP)
    c = fw.client()
    asks = [dict(options=[(coap.ACCEPT, coap.JSON)]), dict(options=[(coap.ACCEPT, coap.CBOR)]),
            dict(path="health"), dict(path=".well-known/core", options=[(coap.URI_QUERY, b"rt=alarm")]),
            dict(path=".well-known/core")]
    for ask in asks:
        r = c.whole(coap.GET, **ask)   # every block of it (3x the request at most: RFC 7252 11.3)
        assert r.code in (coap.CONTENT, coap.SERVICE_UNAVAILABLE), (ask, r)
        if r.code == coap.SERVICE_UNAVAILABLE:
            assert r.payload == b"out of memory"
    r = c.request(coap.PUT, payload=b"ON")
    assert (r.code, r.payload) == (coap.CHANGED, b"ON")
    assert c.request(coap.GET).payload == b"ON"
    assert fw.alive()


# Issue 10, finding 7: every documented option boots in the board heap and serves, or says at
# boot that it needs more (README, Configuration). One boot per option that changes what is
# loaded or allocated, and the combinations a board is most likely to run with.
BOOT_CONFIGS = [
    {},
    {"multicast": False},
    {"input_pin": None},
    {"input_pull": None, "input_active_low": False, "output_active_high": False},
    {"log_level": "debug"},
    {"log_level": "error", "watchdog_s": 0},
    {"health_period_s": 1, "keepalive_s": 10, "notify_con_every": 1, "multicast_leisure_ms": 0},
    {"max_payload": 1024, "max_datagram": 1500},
    {"max_observers": 16, "observers_per_endpoint": 64, "observers_per_address": 64},
    {"dedup_entries": 32},
    {"rd_host": "127.0.0.1", "rd_ep": "board-1", "rd_lifetime_s": 60},
    {"multicast": False, "input_pin": None, "rd_host": "127.0.0.1", "log_level": "debug"},
    {"persist": True},
    {"persist": True, "multicast": False, "input_pin": None, "rd_host": "127.0.0.1"},
    {"persist": True, "log_level": "debug"},
]


def _cfg_id(c):
    c = c if isinstance(c, dict) else c.values[0]
    return ",".join(sorted(c)) or "defaults"


@pytest.mark.parametrize("cfg", BOOT_CONFIGS, ids=[_cfg_id(c) for c in BOOT_CONFIGS])
def test_every_documented_option_boots_and_serves_at_board_heap(firmware, cfg):
    cfg = dict(cfg)
    if "rd_host" in cfg:
        cfg["rd_port"] = free_udp_port()   # nobody there: the client must not even try at 64k
    fw = firmware(heap=BOARD_HEAP, **cfg)
    c = fw.client()
    r = c.request(coap.GET)
    assert (r.code, r.payload) == (coap.CONTENT, b"OFF"), "".join(fw.output)
    assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
    assert c.request(coap.GET).payload == b"ON"
    out = "".join(fw.output)
    assert "Traceback" not in out and "MemoryError" not in out, out
    if "rd_host" in cfg:
        # Refused with a clear message (the RD client needs 11 KB free at boot), not a crash.
        assert re.search(r"rd_host: \d+ KB free, 11 KB needed: not registering", out), out
    if "persist" in cfg:
        # The same for keeping the state (it needs 42 KB free at boot: a 67k heap).
        assert re.search(r"persist: \d+ KB free, 42 KB needed: state not kept", out), out
    c.close()
    assert fw.alive()


def test_keys_in_a_heap_too_small_for_oscore_stop_the_boot_with_a_message(firmware):
    # Serving open what was meant to be protected would be worse than not serving: the boot
    # stops, saying why, and nothing answers (issue 10, finding 7; README, "oscore").
    from harness import OSCORE_CONTEXTS
    with pytest.raises(AssertionError, match=r"firmware exited \(1\)") as e:
        firmware(heap=BOARD_HEAP, oscore=OSCORE_CONTEXTS[:1])
    assert re.search(r"oscore: \d+ KB free, 24 KB needed: not serving", str(e.value)), e.value
    assert "Traceback" not in str(e.value)
