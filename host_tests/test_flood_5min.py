# Issue 10, finding 6: the 5-minute mixed flood at the board heap. The firmware, precompiled,
# under `micropython -X heapsize=64k`, gets 500 datagrams/s for 5 minutes: GETs, PUTs, Observe
# churn under many tokens, Block1 fragments, discovery queries (unicast, and to the group where
# loopback multicast works), malformed and oversized datagrams. A legitimate client asks one
# confirmable GET /alarm per second and retransmits as RFC 7252 4.2 says; a request is served
# when a 2.05 with its token answers any transmission within MAX_TRANSMIT_WAIT. It must be
# served >= 99 % of the time during the flood and every time in the 30 s after it.
#
# The run is tools/flood.py in a process of its own, started by conftest.py as soon as the
# tests are collected, so that its 5 minutes overlap the rest of the suite; this test waits for
# its figures. Run alone, it takes the 5 minutes. COAP_ALARM_FLOOD_SECONDS=60 shortens it.
import os
import sys

from harness import ROOT, free_udp_port

sys.path.insert(0, os.path.join(ROOT, "tools"))
import flood  # noqa: E402


def _why(r):
    return "%s\nfirmware output (tail):\n%s" % (flood.summary(r), "".join(r["output_tail"]))


def test_legit_client_is_served_through_a_mixed_flood_at_the_board_heap(mixed_flood):
    r = mixed_flood
    assert r["alive"] and r["died_at_s"] is None, _why(r)
    # The flood really happened, at its rate, with every kind of datagram in it.
    assert r["sent_total"] >= 0.9 * r["rate"] * r["flood_seconds"], _why(r)
    assert all(n > 0 for n in r["sent"].values()), r["sent"]
    assert r["during"]["asked"] >= r["flood_seconds"] - 1
    assert r["after"]["asked"] >= r["after_seconds"] - 1
    assert r["during"]["served_pct"] >= 99.0, _why(r)
    assert r["after"]["served"] == r["after"]["asked"], _why(r)


def test_the_flood_mix_is_what_the_issue_names():
    """The kinds are built as named: oversized ones exceed the receive buffer (max_payload 64 +
    192), Block1 ones carry Block1, discovery ones a Uri-Query."""
    from host import coapmsg as coap
    f = flood.Flooder(free_udp_port(), 500, 1, group=False)
    try:
        for _ in range(50):
            data, _dest = f.one("oversized", 0)
            assert len(data) > 256
            m = coap.parse(f.one("block1", 1)[0])
            assert m.code == coap.PUT and m.opt(coap.BLOCK1) is not None
            for kind in ("discovery", "multicast"):
                m = coap.parse(f.one(kind, 2)[0])
                assert m.opt(coap.URI_QUERY) is not None and m.code == coap.GET
            m = coap.parse(f.one("observe", 3)[0])
            assert m.code == coap.GET
    finally:
        f.close()
