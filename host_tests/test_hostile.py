# Attacks from a host on the same LAN, played against the message layer over the shim. Each
# test is one finding of the hostile-LAN issue that the layered core already answers.
from host import coapmsg as coap
from harness import make_server, request

OWNER = ("10.0.9.1", 40000)
OTHER = ("10.0.9.2", 40000)


def _rst(mid):
    return coap.encode(coap.Message(coap.RST, coap.EMPTY, mid))


def _ack(mid):
    return coap.encode(coap.Message(coap.ACK, coap.EMPTY, mid))


def test_a_forged_rst_after_the_ack_leaves_the_observation_alive():
    server, alarm, sock, clock = make_server(notify_con_every=1)   # every notification is a CON
    server.datagram(request(coap.GET, mid=1, token=b"ob", options=[(coap.OBSERVE, 0)]), OWNER)
    sock.take()
    alarm.set(True, "put")
    server.service()
    (note, _), = sock.take()
    assert note.mtype == coap.CON
    server.datagram(_ack(note.mid), OWNER)          # the owner acknowledges
    server.datagram(_rst(note.mid), OWNER)          # then a forged RST "from" the owner
    assert len(server.observers) == 1
    alarm.set(False, "put")
    server.service()
    (note, to), = sock.take()
    assert to == OWNER and note.payload == b"OFF"


def test_message_ids_cannot_be_guessed_from_the_last_one():
    # The attacker sees the MID of a NON answer to its own NON GET and forges RSTs "from" the
    # owner for the next few IDs, hoping to hit the notification that follows.
    server, alarm, sock, clock = make_server(notify_con_every=1)
    server.datagram(request(coap.GET, mid=1, token=b"ob", options=[(coap.OBSERVE, 0)]), OWNER)
    sock.take()
    server.datagram(request(coap.GET, mid=2, mtype=coap.NON, token=b"x"), OTHER)
    (seen, _), = sock.take()
    alarm.set(True, "put")
    server.service()
    (note, _), = sock.take()
    for guess in range(seen.mid + 1, seen.mid + 65):
        server.datagram(_rst(guess & 0xFFFF), OWNER)
    assert note.mid not in [(seen.mid + k) & 0xFFFF for k in range(1, 65)]
    assert len(server.observers) == 1
    # Our MIDs stay unique: a long run of them never repeats within 65536 messages.
    mids = [server.endpoint.next_mid() for _ in range(4096)]
    assert len(set(mids)) == len(mids)


def test_a_flood_cannot_flush_a_put_from_the_duplicate_cache():
    # A PUT ON, then B PUT OFF, then a flood of requests from anyone: A's retransmitted
    # PUT ON must get its cached answer, not be applied again (the alarm stays OFF).
    server, alarm, sock, clock = make_server()
    put_on = request(coap.PUT, mid=500, token=b"a", payload=b"ON")
    server.datagram(put_on, OWNER)
    server.datagram(request(coap.PUT, mid=77, token=b"b", payload=b"OFF"), OTHER)
    for k in range(100):
        server.datagram(request(coap.GET, mid=1000 + k, token=b"f"), ("10.0.9.%d" % (10 + k % 50), 5683))
    sock.take()
    assert alarm.on is False
    server.datagram(put_on, OWNER)                  # the retransmission
    (r, to), = sock.take()
    assert (to, r.mid, r.code, r.payload) == (OWNER, 500, coap.CHANGED, b"ON")  # the cached answer
    assert alarm.on is False and alarm.changes == 2
