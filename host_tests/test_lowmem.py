# At the board-sized heap the text/plain alarm runs with everything on; a feature loaded on first
# use (JSON, CBOR, /health, discovery filters) may find no room. The client then gets a clear 5.03,
# not silence, and the alarm keeps serving.
from host import coapmsg as coap
from harness import BOARD_HEAP


def test_first_use_features_at_board_heap_answer_or_say_503(firmware):
    fw = firmware(heap=BOARD_HEAP)
    c = fw.client()
    asks = [dict(options=[(coap.ACCEPT, coap.JSON)]), dict(options=[(coap.ACCEPT, coap.CBOR)]),
            dict(path="health"), dict(path=".well-known/core", options=[(coap.URI_QUERY, b"rt=alarm")])]
    for ask in asks:
        r = c.request(coap.GET, **ask)
        assert r.code in (coap.CONTENT, coap.SERVICE_UNAVAILABLE), (ask, r)
        if r.code == coap.SERVICE_UNAVAILABLE:
            assert r.payload == b"out of memory"
    r = c.request(coap.PUT, payload=b"ON")
    assert (r.code, r.payload) == (coap.CHANGED, b"ON")
    assert c.request(coap.GET).payload == b"ON"
    assert fw.alive()
