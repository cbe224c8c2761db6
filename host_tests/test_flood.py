# One client flooding must not starve another: while the flood runs, a second client's GET is
# answered within RFC 7252's retransmission window (MAX_TRANSMIT_SPAN, 45 s).
import socket
import threading
import time

from host import coapmsg as coap
from harness import request

FLOOD_MAX = 200000
FLOOD_SECONDS = 20      # the flood stops by itself even if the test fails


def test_flooding_client_does_not_starve_another(firmware):
    fw = firmware(log_level="warning")
    stop = threading.Event()
    sent = [0]

    def flood():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        end = time.monotonic() + FLOOD_SECONDS
        mid = 0
        while not stop.is_set() and sent[0] < FLOOD_MAX and time.monotonic() < end:
            mid = (mid + 1) & 0xFFFF
            try:
                s.sendto(request(coap.GET, mid=mid, token=b"\xff"), ("127.0.0.1", fw.port))
            except OSError:
                pass  # loopback buffer full: keep pushing
            sent[0] += 1
        s.close()

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        while sent[0] < 20000 and t.is_alive():
            time.sleep(0.01)  # let the flood build up before the victim asks (not synchronisation)
        c = fw.client()
        mid = c.next_mid()
        data = request(coap.GET, mid=mid, token=b"\x5a")
        timeout = 2.0
        answer = None
        for _ in range(5):  # the first try and MAX_RETRANSMIT = 4 more, doubling (RFC 7252 4.2)
            c.send(data)
            try:
                answer = c.request_reply(mid, timeout)
                break
            except socket.timeout:
                timeout *= 2
        assert answer is not None, "starved: no answer within the retransmission window"
        assert answer.code == coap.CONTENT
        assert t.is_alive() or sent[0] >= 20000
    finally:
        stop.set()
        t.join(FLOOD_SECONDS + 5)
    assert fw.alive()
