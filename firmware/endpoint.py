# The message layer (RFC 7252 4): one UDP socket, duplicate detection, pings and resets,
# message IDs, CON retransmission, and what ACK and RST mean. It knows nothing of resources:
# requests go up to `handler` (the site, or a protection layer wrapping it). docs/design.md.
from firmware import coap, log
from firmware.compat import const, ticks_add, ticks_diff, addr_str

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_EMPTY = const(0x00)
_GET = const(0x01)
_REQUEST_ENTITY_TOO_LARGE = const(0x8D)
_SIZE1 = const(60)
_SERVICE_LIMIT_MS = const(1000)
_MAX_LATER = const(4)     # multicast responses waiting out their leisure; more are not answered


class Endpoint:
    """Takes datagrams, hands requests to `handler`, sends what it returns.

    handler.request(req, addr, now, mcast) -> the encoded reply (bytes or a view), or None
    for no reply. Our own CON messages go through confirm(): their owner (an observation,
    the RD client) hears acked(tag) / failed(tag, reason) and may give fresher data to resend
    through fresh(tag). Responses to our own requests go to a client with a matching token.
    Timed work (retransmissions, multicast leisure, anything in `timers`) runs in service().
    No asyncio here: the app calls datagram() and service(), so tests drive it with a fake
    socket and a fake clock.
    """

    def __init__(self, sock, clock, rand, dedup, outbox, rx_size, leisure_ms):
        self.sock = sock
        self.clock = clock
        self.rand = rand
        self.rx_size = rx_size
        self.max_payload = 0      # for 4.13 from a header alone: set with the site
        self.handler = None       # the site (or its protection wrapper), set at boot
        self.clients = []         # our own requests' owners: .token, .response(msg, addr)
        self.timers = []          # objects with service(now) -> ms until they want a call
        self.cancel = None        # fn(addr, mid, now): an RST that answers no CON of ours
        self.pending = False      # someone wants service() soon (e.g. a notification is owed)
        # Every reply and notification is encoded here. Our bodies are all far under 200
        # bytes, so it starts at 256 and grows, once, only if a bigger message comes along.
        self.writer = coap.Writer(256)
        self.reader = coap.Reader()  # every datagram is decoded into this one
        self.count = rand(16)
        r = rand(32)
        self.keys = (r & 0xFF, (r >> 8) & 0xFF, (r >> 16) & 0xFF, r >> 24)
        self.dedup = dedup        # messages.DedupCache
        self.outbox = outbox      # messages.Outbox
        self.leisure_ms = leisure_ms
        self.later = []           # [due, data, addr]: multicast responses held back (RFC 7252 8.2)
        self.received = 0
        self.malformed = 0
        self.duplicates = 0

    # -- sending ---------------------------------------------------------------------------

    def next_mid(self):
        """A Message ID for a message this endpoint originates. A counter, so IDs stay unique
        for 65536 messages (RFC 7252 4.4), scrambled by a permutation keyed at random at boot,
        so the next ID is not predictable from the last: an off-path host cannot forge the ACK
        or RST for a message it did not see."""
        c = self.count = (self.count + 1) & 0xFFFF
        hi = c >> 8
        lo = c & 0xFF
        for k in self.keys:  # a four-round Feistel network on 8-bit halves: a permutation
            hi, lo = lo, hi ^ ((((lo * 167) ^ k) + (lo >> 3)) & 0xFF)
        return (hi << 8) | lo

    def send(self, data, addr):
        try:
            self.sock.sendto(data, addr)
        except OSError as e:
            # Full buffers or an unreachable peer: CoAP recovers by retransmission.
            log.debug("send to %s failed: %s", addr_str(addr), e)

    def header(self, req, code):
        """Start the answer to req in the writer: piggybacked on the ACK of a CON, else a NON
        with a MID of its own (RFC 7252 5.2). Returns the writer, for options and payload."""
        if req.mtype == _CON:
            return self.writer.reply_header(_ACK, code, req.mid, req)
        return self.writer.reply_header(_NON, code, self.next_mid(), req)

    def reset(self, mid, addr, mtype=_RST):
        """An empty RST (or, with mtype ACK, an empty ACK) for mid."""
        w = self.writer
        w.header(mtype, _EMPTY, mid, b"")
        self.send(w.view(), addr)

    def confirm(self, addr, data, owner, tag, now):
        """Send data, a CON whose MID is data[2:4], and retransmit it until it is acknowledged.
        False when every outbox slot is busy (nothing is sent then)."""
        mid = (data[2] << 8) | data[3]
        if self.outbox.add(addr, mid, data, owner, tag, now) < 0:
            return False
        self.send(data, addr)
        return True

    def forget(self, owner, tag):
        """Stop retransmitting owner's message with this tag, if one is in flight."""
        box = self.outbox
        j = box.find(owner, tag)
        if j >= 0:
            box.free(j)

    # -- receiving -------------------------------------------------------------------------

    def datagram(self, data, addr, mcast=False):
        """Handle one received datagram (mcast: it came to the multicast group). Never raises."""
        try:
            self.receive(data, addr, mcast)
        except Exception as e:  # a bug must cost one packet, never the loop
            try:
                log.error("datagram from %s dropped: %r", addr_str(addr), e)
            except MemoryError:  # nor does the message, when there is no room for it
                pass

    def receive(self, data, addr, mcast):
        """datagram() without its guard, for a caller that has its own (the receive loop). It may
        raise; an OSError then means the reply could not be sent (it is cached all the same).

        The path is cut into small methods on purpose: in MicroPython a frame of more than 11
        slots (fewer with a try) is a heap block per call, and that churn brings the next
        garbage collection closer. docs/design.md."""
        self.received += 1
        if len(data) >= self.rx_size and self.full(data, addr, mcast, _REQUEST_ENTITY_TOO_LARGE):
            return
        msg = self.parse(data)
        if msg is None:
            self.malformed += 1
            if self.reader.mtype == _CON and not mcast:
                self.reset(self.reader.mid, addr)  # reject (RFC 7252 4.2)
            return
        if 0 < msg.code < 32 and msg.mtype < _ACK and not mcast:
            self.request(msg, addr)    # a request: the common case
        else:
            self.handle(msg, addr, mcast)

    def parse(self, data):
        """The datagram decoded into self.reader, or None (reader.mtype is -1 unless the header
        could be read, so that a malformed CON can be rejected)."""
        try:
            return self.reader.load(data)
        except coap.CoapError:
            return None

    def request(self, msg, addr):
        now = self.clock()
        out = self.dedup.find(addr, msg.mid, now)
        if out >= 0:
            self.duplicates += 1
            out = self.dedup.reply(out, len(msg.data))  # None for a look-alike (RFC 7252 11.3)
            if out is not None:
                self.sock.sendto(out, addr)
            return
        # The datagram's length, taken before the handler (a protection layer loads the inner
        # request into msg), goes with the entry. An attribute, not a local: this frame stays
        # small enough for the C stack (docs/design.md, RAM rule 2).
        self.dedup.n = len(msg.data)
        out = self.handler.request(msg, addr, now, False)
        # Cached before it is sent: if sending fails, a retransmission still finds it. A CON's
        # reply is kept for its retransmissions; a repeated NON is just ignored.
        self.dedup.add(addr, msg, now, out)
        if out is not None:
            self.sock.sendto(out, addr)

    def handle(self, msg, addr, mcast):
        """Everything but a unicast request: a group request, an empty message, a response."""
        mtype = msg.mtype
        code = msg.code
        now = self.clock()
        if mcast:
            # To the All-CoAP-Nodes group: NON GET only (a group PUT would switch every alarm
            # at once), answered after a random leisure and never with an error (RFC 7252 8.2).
            if mtype != _NON or code != _GET or self.dedup.find(addr, msg.mid, now) >= 0:
                return
            self.dedup.add(addr, msg, now, None)
            out = self.handler.request(msg, addr, now, True)
            if out is not None and out[1] >> 5 == 2 and len(self.later) < _MAX_LATER:
                self.later.append([ticks_add(now, self.rand(16) % (self.leisure_ms + 1)), bytes(out), addr])
                self.pending = True
            return
        if code == _EMPTY:
            if mtype == _CON:
                self.reset(msg.mid, addr)  # CoAP ping
            elif mtype == _ACK:
                self._answered(addr, msg.mid, False)
            elif mtype == _RST:
                self._answered(addr, msg.mid, True)
            return
        if code >> 5:
            if msg.tkl:
                for client in self.clients:
                    if msg.token == client.token:
                        # A response to our own request: piggybacked, or separate (ACK it).
                        if mtype == _ACK:
                            self.outbox.pop(addr, msg.mid)
                        elif mtype == _CON:
                            self.reset(msg.mid, addr, _ACK)
                        client.response(msg, addr)
                        return
            # A response, or a reserved code class: we sent no request it could answer.
            if mtype == _ACK:
                self._answered(addr, msg.mid, False)
            elif mtype == _CON:
                self.reset(msg.mid, addr)
        # else: a request in an ACK or RST, which cannot carry one: ignored

    def full(self, data, addr, mcast, code):
        """The datagram filled the receive buffer, so it may have been cut: answer a request
        4.13 from its header alone (RFC 7252 5.9.2.9), rather than act on a truncated one.
        (The receive loop passes 5.03 when it had to read into a smaller buffer for want of
        memory.) False when it is not a request (the codec decides what it is)."""
        b0 = data[0]
        mtype = (b0 >> 4) & 3
        if b0 >> 6 != 1 or b0 & 15 > 8 or not 1 <= data[1] < 32 or mtype > _NON:
            return False
        if not mcast:
            w = self.writer
            mid = (data[2] << 8) | data[3]
            w.header(_ACK if mtype == _CON else _NON, code,
                     mid if mtype == _CON else self.next_mid(), bytes(data[4:4 + (b0 & 15)]))
            if code == _REQUEST_ENTITY_TOO_LARGE:
                w.option_uint(_SIZE1, self.max_payload)
            self.send(w.view(), addr)
        return True

    def _answered(self, addr, mid, rst):
        # An ACK, or an RST (rst): it settles a CON of ours still waiting for its ACK. Any other
        # RST goes to cancel(), which gives it a time limit (an old message ID is easy to know).
        box = self.outbox
        j = box.match(addr, mid)
        if j < 0:
            if rst and self.cancel is not None:
                self.cancel(addr, mid, self.clock())
            return
        owner = box.owners[j]
        tag = box.tags[j]
        box.free(j)
        if rst:
            owner.failed(tag, "reset by client")
        else:
            owner.acked(tag)

    # -- timed work ------------------------------------------------------------------------

    def service(self):
        """Retransmit, send what is owed, run the timers. Returns ms until it is due again."""
        now = self.clock()
        self.pending = False
        box = self.outbox
        for j in range(box.capacity):
            if not box.due(j, now):
                continue
            owner = box.owners[j]
            tag = box.tags[j]
            if not box.backoff(j, now):
                box.free(j)
                owner.failed(tag, "no ACK after retransmissions")
                continue
            # The owner may have something newer to say (RFC 7641 4.5.2): a new message.
            fresh = owner.fresh(tag)
            if fresh is not None:
                box.replace(j, (fresh[2] << 8) | fresh[3], fresh)
            self.send(box.data[j], box.addrs[j])
        wait = _SERVICE_LIMIT_MS
        later = self.later
        i = len(later)
        while i:
            i -= 1
            left = ticks_diff(later[i][0], now)
            if left <= 0:
                item = later.pop(i)
                self.send(item[1], item[2])
            elif left < wait:
                wait = left
        for t in self.timers:
            left = t.service(now)
            if left < wait:
                wait = left
        return box.next_deadline(now, wait)
