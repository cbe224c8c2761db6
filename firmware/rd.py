# Resource Directory registration (RFC 9176 5.3): find the directory's registration resource
# (GET /.well-known/core?rt=core.rd, 4.3; /rd if it lists none), register, refresh before the
# lifetime runs out, register afresh when a refresh is refused or the directory stops answering
# (a network drop). Sends through the endpoint (our CONs are its outbox entries: acked /
# failed / fresh); the endpoint hands back our responses, matched by token.
from firmware import compat, log
from firmware.compat import const, ticks_add, ticks_diff

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_CON = const(0)
_GET = const(0x01)
_POST = const(0x02)
_CREATED = const(0x41)
_CHANGED = const(0x44)
_CONTENT = const(0x45)
_LOCATION_PATH = const(8)
_URI_PATH = const(11)
_CONTENT_FORMAT = const(12)
_URI_QUERY = const(15)
_LINK_FORMAT = const(40)

_RETRY_MIN_S = 10
_RETRY_MAX_S = 600
_EXCHANGE_MS = 250000     # longer than all retransmissions (RFC 7252 4.8.2): then give up
_WAIT_MS = 60000          # for a separate response after an empty ACK


def attach(endpoint, cfg, links):
    """At boot: register at the directory cfg names, through the endpoint. links() gives our
    link-format document. Returns the RdClient, or None."""
    try:
        addr = compat.sockaddr(cfg["rd_host"], cfg["rd_port"])
    except OSError as e:
        log.warning("rd: cannot resolve %s: %s; not registering", cfg["rd_host"], e)
        return None
    return RdClient(endpoint, addr, cfg["rd_ep"] or cfg["hostname"], cfg["rd_lifetime_s"], links)


class RdClient:
    def __init__(self, endpoint, addr, ep, lifetime_s, links):
        self.endpoint = endpoint
        self.addr = addr
        self.ep = b"ep=" + ep.encode()
        self.lt = b"lt=%d" % lifetime_s
        self.refresh_ms = lifetime_s * 750   # at 3/4 of the lifetime
        self.links = links            # fn() -> our link-format document
        self.reg_path = None          # Uri-Path segments of the registration resource, once found
        self.location = None          # Location-Path segments of our registration
        self.token = b""              # token of our request in flight; b"" when none
        self.retry_s = _RETRY_MIN_S
        self.due = endpoint.clock()   # next send, or the give-up deadline while in flight
        endpoint.clients.append(self)
        endpoint.timers.append(self)

    def restart(self):
        """The network came back: register afresh at once."""
        self.endpoint.forget(self, 0)
        self.reg_path = None
        self.location = None
        self.token = b""
        self.retry_s = _RETRY_MIN_S
        self.due = self.endpoint.clock()

    def service(self, now):
        """Called by the endpoint's service(): send when due. Returns ms until it wants a call."""
        left = ticks_diff(self.due, now)
        if left > 0:
            return left
        if self.token:
            self.failed(0, "no response")  # a separate response that never came
        else:
            self._send(now)
        return 1000

    def _send(self, now):
        s = self.endpoint
        mid = s.next_mid()
        r = s.rand(32)            # a random token: an off-path host cannot guess our response
        token = bytes((r >> 24 & 255, r >> 16 & 255, r >> 8 & 255, r & 255))
        w = s.writer
        if self.reg_path is None:
            w.header(_CON, _GET, mid, token)
            w.option(_URI_PATH, b".well-known")
            w.option(_URI_PATH, b"core")
            w.option(_URI_QUERY, b"rt=core.rd")
        elif self.location is None:
            w.header(_CON, _POST, mid, token)
            for seg in self.reg_path:
                w.option(_URI_PATH, seg)
            w.option_uint(_CONTENT_FORMAT, _LINK_FORMAT)
            w.option(_URI_QUERY, self.ep)
            w.option(_URI_QUERY, self.lt)
            w.payload(self.links())
        else:
            w.header(_CON, _POST, mid, token)
            for seg in self.location:
                w.option(_URI_PATH, seg)
            w.option(_URI_QUERY, self.lt)
        if not s.confirm(self.addr, bytes(w.view()), self, 0, now):
            self.due = ticks_add(now, 1000)   # every slot is busy with notifications: later
            return
        self.token = token
        self.due = ticks_add(now, _EXCHANGE_MS)

    # -- the outbox owner's interface ------------------------------------------------------

    def acked(self, tag):
        self.due = ticks_add(self.endpoint.clock(), _WAIT_MS)

    def fresh(self, tag):
        return None                   # a retransmission repeats the request as it was

    def failed(self, tag, reason):
        """No answer: the network or the directory is down. Register afresh, with back-off."""
        log.warning("rd: no answer from the directory; registering again in %d s", self.retry_s)
        self.endpoint.forget(self, 0)
        self.token = b""
        self.location = None
        self._retry(self.endpoint.clock())

    def response(self, msg, addr):
        s = self.endpoint
        now = s.clock()
        s.forget(self, 0)             # a separate response also answers our CON
        self.token = b""
        code = msg.code
        if self.reg_path is None:
            self.reg_path = _first_path(msg.payload) if code == _CONTENT else None
            if not self.reg_path:
                self.reg_path = [b"rd"]   # the directory lists none: the usual path
            log.info("rd: directory registers at /%s", b"/".join(self.reg_path).decode())
            self.due = now
            return
        if self.location is None and code == _CREATED:
            loc = msg.opts(_LOCATION_PATH)
            if loc:
                self.location = loc
                log.info("rd: registered as /%s", b"/".join(loc).decode())
                self._ok(now)
                return
        elif self.location is not None and code == _CHANGED:
            log.info("rd: registration refreshed")
            self._ok(now)
            return
        elif self.location is not None and code >> 5 == 4:
            log.info("rd: registration gone (%d.%02d); registering again", code >> 5, code & 31)
            self.location = None
            self.due = now
            return
        log.warning("rd: directory answered %d.%02d", code >> 5, code & 31)
        self._retry(now)

    def _ok(self, now):
        self.retry_s = _RETRY_MIN_S
        self.due = ticks_add(now, self.refresh_ms)

    def _retry(self, now):
        self.due = ticks_add(now, self.retry_s * 1000)
        self.retry_s = min(self.retry_s * 2, _RETRY_MAX_S)


def _first_path(links):
    """Uri-Path segments of the first link's target: <coap://h/a/b/> or </a/b/> -> [a, b, b""]."""
    i = links.find(b"<")
    j = links.find(b">", i)
    if i < 0 or j < 0:
        return None
    href = links[i + 1:j]
    k = href.find(b"//")
    if k >= 0:
        k = href.find(b"/", k + 2)
        href = href[k:] if k >= 0 else b"/"
    segs = href.split(b"/")[1:]   # a trailing slash is an empty last segment, as sent
    return segs if segs and segs != [b""] else None
