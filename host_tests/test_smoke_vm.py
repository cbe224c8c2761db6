from host import coapmsg as coap


def test_get_put_under_micropython(firmware):
    fw = firmware()
    c = fw.client()
    r = c.request(coap.GET)
    assert r.code == coap.CONTENT and r.payload == b"OFF"
    r = c.request(coap.PUT, payload=b"on")
    assert r.code == coap.CHANGED and r.payload == b"ON"
    fw.wait_for("output GPIO2 = 1")
