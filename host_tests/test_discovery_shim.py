# Multicast handling and the Resource Directory client, through the shim (no network, fake time).
from host import coapmsg as coap
from firmware.rd import RdClient
from harness import request
from harness import full_server

PHONE = ("127.0.0.1", 45000)
RD = ("127.0.0.1", 5999)


def test_multicast_discovery_waits_out_the_leisure():
    server, _, sock, clock, _ = full_server(multicast_leisure_ms=3000)
    server.datagram(request(coap.GET, ".well-known/core", mtype=coap.NON, token=b"d",
                            options=[(coap.URI_QUERY, b"rt=alarm")]), PHONE, True)
    assert sock.sent == []
    due = server.later[0][0]
    assert 0 <= due - clock() <= 3000
    clock.now = due - 1
    server.service()
    assert sock.sent == []
    clock.now = due
    server.service()
    (r, addr), = sock.take()
    assert addr == PHONE and r.mtype == coap.NON and r.token == b"d" and r.code == coap.CONTENT
    assert r.payload.startswith(b"</alarm>") and b"health" not in r.payload
    clock.advance(10000)
    server.service()
    assert sock.sent == []


def test_multicast_never_answers_what_it_cannot_serve():
    server, alarm, sock, clock, _ = full_server()
    bad = [
        request(coap.GET, "nope", mtype=coap.NON),                                   # 4.04
        request(coap.GET, ".well-known/core", mtype=coap.NON, mid=2,
                options=[(coap.URI_QUERY, b"rt=thermostat")]),                     # empty result
        request(coap.GET, ".well-known/core", mtype=coap.CON, mid=3),               # CON to a group
        request(coap.GET, ".well-known/core", mtype=coap.NON, mid=4, options=[(coap.ACCEPT, 50)]),  # 4.06
        request(coap.GET, "alarm", mtype=coap.NON, mid=5, options=[(coap.URI_PATH + 2, b"x")]),  # 4.02
        request(coap.PUT, "alarm", mtype=coap.NON, mid=6, payload=b"ON"),           # not via the group
        b"\x40\x01",                                                               # malformed
        b"\x58\x01\x00\x07",                                                       # bad token length
    ]
    for data in bad:
        server.datagram(data, PHONE, True)
    clock.advance(60000)
    server.service()
    assert sock.sent == [] and server.later == [] and alarm.on is False


def test_multicast_backlog_is_bounded():
    server, _, sock, clock, _ = full_server()
    for i in range(20):
        server.datagram(request(coap.GET, ".well-known/core", mtype=coap.NON, mid=i), ("127.0.0.1", 46000 + i), True)
    assert len(server.later) == 4
    clock.advance(5000)
    server.service()
    assert len(sock.take()) == 4


def rd_server(lifetime=60):
    server, alarm, sock, clock, _ = full_server()
    wkc = server.routes[b".well-known/core"]
    rd = RdClient(server.endpoint, RD, "alarm-1", lifetime, lambda: wkc.render(40))
    server.service()
    (req, _), = sock.take()    # first, where does this directory take registrations?
    assert path_query(req) == (".well-known/core", ["rt=core.rd"]) and req.code == coap.GET
    answer(server, req, coap.CONTENT, payload=b"<coap://[::1]/x>;rt=\"core.rd\"")
    return server, rd, sock, clock


def path_query(msg):
    return ("/".join(v.decode() for n, v in msg.options if n == coap.URI_PATH),
            sorted(v.decode() for n, v in msg.options if n == coap.URI_QUERY))


def answer(server, req, code, location=(), mtype=coap.ACK, payload=b""):
    msg = coap.Message(mtype, code, req.mid if mtype == coap.ACK else 999, req.token, [], payload)
    for seg in location:
        msg.add(coap.LOCATION_PATH, seg)
    server.datagram(coap.encode(msg), RD)


def test_rd_registers_refreshes_and_reregisters_after_a_drop():
    server, rd, sock, clock = rd_server(60)
    server.service()
    (req, addr), = sock.take()
    assert addr == RD and req.mtype == coap.CON and req.code == coap.POST
    assert path_query(req) == ("x", ["ep=alarm-1", "lt=60"])
    assert req.opt_uint(coap.CONTENT_FORMAT) == 40 and req.payload.startswith(b"</alarm>")
    answer(server, req, coap.CREATED, [b"reg", b"7"])
    assert rd.location == [b"reg", b"7"]
    clock.advance(44000)
    server.service()
    assert sock.take() == []
    clock.advance(1000)             # 3/4 of the lifetime: refresh
    server.service()
    (req, _), = sock.take()
    assert path_query(req) == ("reg/7", ["lt=60"]) and req.payload == b""
    answer(server, req, coap.CHANGED)
    # The network drops: the next refresh goes unanswered through every retransmission.
    sock.drop = lambda data, addr: True
    clock.advance(45000)
    for _ in range(200):
        server.service()
        clock.advance(1000)
        if rd.location is None:
            break
    assert rd.location is None and len(server.outbox) == 0
    sock.drop = None
    clock.advance(10000)            # back-off, then a fresh registration
    server.service()
    (req, _), = sock.take()
    assert path_query(req) == ("x", ["ep=alarm-1", "lt=60"])
    answer(server, req, coap.CREATED, [b"reg", b"8"])
    assert rd.location == [b"reg", b"8"]


def test_rd_refresh_refused_registers_again_and_separate_response():
    server, rd, sock, clock = rd_server(60)
    server.service()
    (req, _), = sock.take()
    # Empty ACK first, then the 2.01 as a separate CON response, which we ACK.
    server.datagram(coap.encode(coap.Message(coap.ACK, coap.EMPTY, req.mid)), RD)
    assert len(server.outbox) == 0
    answer(server, req, coap.CREATED, [b"rd", b"abc"], mtype=coap.CON)
    (ack, _), = sock.take()
    assert ack.mtype == coap.ACK and ack.code == coap.EMPTY and ack.mid == 999
    assert rd.location == [b"rd", b"abc"]
    clock.advance(45000)
    server.service()
    (req, _), = sock.take()
    answer(server, req, coap.NOT_FOUND)      # the directory forgot us (it restarted, say)
    server.service()
    (req, _), = sock.take()
    assert path_query(req)[0] == "x" and rd.location is None


def test_rd_response_with_wrong_token_is_not_ours():
    server, rd, sock, clock = rd_server(60)
    server.service()
    (req, _), = sock.take()
    msg = coap.Message(coap.ACK, coap.CREATED, req.mid, b"zz")
    msg.add(coap.LOCATION_PATH, b"x")
    server.datagram(coap.encode(msg), RD)
    assert rd.location is None


def test_rd_registration_path_discovery():
    from firmware.rd import _first_path
    assert _first_path(b'</resourcedirectory/>;rt="core.rd"') == [b"resourcedirectory", b""]
    assert _first_path(b'<coap://192.0.2.1:5683/rd>;rt="core.rd"') == [b"rd"]
    assert _first_path(b'<coap://h>') is None and _first_path(b"") is None and _first_path(b"</>") is None


def test_rd_without_discovery_falls_back_to_rd():
    server, alarm, sock, clock, _ = full_server()
    RdClient(server.endpoint, RD, "e", 60, lambda: b"</alarm>")  # registers itself with the endpoint
    server.service()
    (req, _), = sock.take()
    answer(server, req, coap.NOT_FOUND)
    server.service()
    (req, _), = sock.take()
    assert path_query(req) == ("rd", ["ep=e", "lt=60"])
