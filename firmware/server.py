# The CoAP endpoint: takes datagrams, answers requests, keeps observers informed.
# No asyncio here: the app calls datagram() for each packet and service() when it is due,
# so tests can drive it with a fake socket and a fake clock.
from firmware import coap, log
from firmware.compat import const, ticks_add, ticks_diff, addr_str
from firmware.messages import DedupCache, Outbox
from firmware.observers import ObserverTable

# CoAP numbers (host/coapmsg.py has them all), folded into the bytecode: no RAM.
_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_EMPTY = const(0x00)
_GET = const(0x01)
_POST = const(0x02)
_PUT = const(0x03)
_CONTENT = const(0x45)
_CONTINUE = const(0x5F)
_BAD_OPTION = const(0x82)
_NOT_FOUND = const(0x84)
_PRECONDITION_FAILED = const(0x8C)
_REQUEST_ENTITY_TOO_LARGE = const(0x8D)
_INTERNAL_SERVER_ERROR = const(0xA0)
_SERVICE_UNAVAILABLE = const(0xA3)
_PROXYING_NOT_SUPPORTED = const(0xA5)
_IF_MATCH = const(1)
_URI_HOST = const(3)
_IF_NONE_MATCH = const(5)
_OBSERVE = const(6)
_URI_PORT = const(7)
_URI_PATH = const(11)
_CONTENT_FORMAT = const(12)
_MAX_AGE = const(14)
_URI_QUERY = const(15)
_ACCEPT = const(17)
_BLOCK2 = const(23)
_BLOCK1 = const(27)
_SIZE2 = const(28)
_PROXY_URI = const(35)
_PROXY_SCHEME = const(39)
_SIZE1 = const(60)

# Critical options (odd numbers) this server understands; any other gets 4.02 (RFC 7252 5.4.1).
# A bit mask (bit n >> 1 for odd option n, so it stays a small int on a 32-bit board): a
# const, so no tuple and no global.
_KNOWN_CRITICAL = const((1 << (_IF_MATCH >> 1)) | (1 << (_URI_HOST >> 1)) | (1 << (_IF_NONE_MATCH >> 1))
                        | (1 << (_URI_PORT >> 1)) | (1 << (_URI_PATH >> 1)) | (1 << (_URI_QUERY >> 1))
                        | (1 << (_ACCEPT >> 1)) | (1 << (_BLOCK2 >> 1)) | (1 << (_BLOCK1 >> 1))
                        | (1 << (_PROXY_URI >> 1)) | (1 << (_PROXY_SCHEME >> 1)))
_MAX_SZX = const(6)          # 1024-byte blocks at most (Block2 itself: blockwise.py)
_SERVICE_LIMIT_MS = const(1000)
# Room for header, token and options on top of the largest accepted body. The receive buffer
# is that big and no bigger: a 1152-byte buffer per datagram fragments a small heap (RFC 7252
# 4.6 sets no minimum a server must accept). A datagram that fills it is answered 4.13.
_RX_HEADROOM = const(192)
_MAX_LATER = const(4)     # multicast responses waiting out their leisure; more are not answered


class Server:
    def __init__(self, sock, cfg, resources, clock, rand):
        self.sock = sock
        self.clock = clock
        self.routes = {}
        for r in resources:
            self.routes[r.path] = r
        self.max_payload = cfg["max_payload"]
        self.rx_size = min(cfg["max_datagram"], cfg["max_payload"] + _RX_HEADROOM)
        self.con_every = cfg["notify_con_every"]
        self.keepalive_ms = cfg["keepalive_s"] * 1000
        # A notification is sent at least every keepalive_s, so observers' copies stay fresh.
        self.max_age = cfg["keepalive_s"] + 30
        # Every reply is encoded here. Our bodies and diagnostics are all far under 200 bytes,
        # so it starts at 256 (not at a 1024-byte Block2 block plus headers, which nothing we
        # serve needs) and grows, once, only if a bigger message ever comes along.
        self.writer = coap.Writer(256)
        self.mid = rand(16) & 0xFFFF   # our own messages' IDs: start random, then count up
        self.dedup = DedupCache(cfg["dedup_entries"])
        self.reader = coap.Reader()  # every request is decoded into this one: no per-packet lists
        self.observers = ObserverTable(cfg["max_observers"])
        self.outbox = Outbox(cfg["max_observers"] + 1, rand)
        self.seq = rand(16)
        self.pending = False
        self.leisure_ms = cfg.get("multicast_leisure_ms", 2000)
        self.rand = rand
        self.later = []         # [due, data, addr]: multicast responses held back (RFC 7252 8.2)
        self.block1 = None      # Block1 reassembly, created on first use
        self.client = None      # our own requests' owner (RD client): token, response(), acked(), failed(), tick()
        self.received = 0
        self.malformed = 0
        self.duplicates = 0

    # -- sending ---------------------------------------------------------------------------

    def next_mid(self):
        """A Message ID for a message this endpoint originates."""
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def send(self, data, addr):
        try:
            self.sock.sendto(data, addr)
        except OSError as e:
            # Full buffers or an unreachable peer: CoAP recovers by retransmission.
            log.debug("send to %s failed: %s", addr_str(addr), e)

    def _reset(self, mid, addr, mtype=_RST):
        w = self.writer
        w.header(mtype, _EMPTY, mid, b"")
        self.send(w.view(), addr)

    # -- receiving -------------------------------------------------------------------------

    def datagram(self, data, addr, mcast=False):
        """Handle one received datagram (mcast: it came to the multicast group). Never raises."""
        self.received += 1
        try:
            if mcast:
                self._multicast(data, addr)
            else:
                self._datagram(data, addr)
        except Exception as e:  # a bug must cost one packet, never the loop
            try:
                log.error("datagram from %s dropped: %r", addr_str(addr), e)
            except MemoryError:  # e.g. a first-use module found no room: nor does the message
                pass

    def _datagram(self, data, addr):
        now = self.clock()
        if len(data) >= self.rx_size:
            from firmware.blockwise import too_large  # rare: loaded on first use
            if too_large(self, data, addr):
                return
        try:
            msg = self.reader.load(data)
        except coap.CoapError as e:
            self.malformed += 1
            log.debug("malformed datagram: %s", e.reason)  # no address: formatting it allocates
            if e.mtype == _CON:
                self._reset(e.mid, addr)  # reject (RFC 7252 4.2)
            return
        mtype = msg.mtype
        code = msg.code
        if code == _EMPTY:
            if mtype == _CON:
                self._reset(msg.mid, addr)  # CoAP ping
            elif mtype == _ACK:
                self._acked(addr, msg.mid)
            elif mtype == _RST:
                self._rejected(addr, msg.mid)
            return
        if code >> 5:
            client = self.client
            if client is not None and msg.token and msg.token == client.token:
                # A response to our own request: piggybacked, or separate (ACK it when CON).
                if mtype == _ACK:
                    self.outbox.pop(addr, msg.mid)
                elif mtype == _CON:
                    self._reset(msg.mid, addr, _ACK)
                client.response(msg, addr)
                return
            # A response, or a reserved code class: we sent no request it could answer.
            if mtype == _ACK:
                self._acked(addr, msg.mid)
            elif mtype == _CON:
                self._reset(msg.mid, addr)
            return
        if mtype == _ACK or mtype == _RST:
            return  # a request cannot ride in an ACK or RST
        i = self.dedup.find(addr, msg.mid, now)
        if i >= 0:
            self.duplicates += 1
            reply = self.dedup.reply(i)
            if reply is not None:
                self.send(reply, addr)
            return
        out = self._request(msg, addr, now)
        if out is None:
            self.dedup.add(addr, msg.mid, now, None)
            return
        self.send(out, addr)
        # Keep a CON's reply for its retransmissions; a repeated NON is just ignored.
        self.dedup.add(addr, msg.mid, now, out if mtype == _CON else None)

    def _multicast(self, data, addr):
        # A request to the All-CoAP-Nodes group: NON only, answered after a random leisure
        # (RFC 7252 8.2) and only when we can serve it: never an error or an empty answer.
        now = self.clock()
        try:
            msg = self.reader.load(data)
        except coap.CoapError:
            return
        # GET only: a group PUT would switch every alarm at once, which is not discovery's job.
        if msg.mtype != _NON or msg.code != _GET or self.dedup.find(addr, msg.mid, now) >= 0:
            return
        self.dedup.add(addr, msg.mid, now, None)
        out = self._request(msg, addr, now, True)
        if out is None or out[1] >> 5 != 2 or len(self.later) >= _MAX_LATER:
            return
        due = ticks_add(now, self.rand(16) % (self.leisure_ms + 1))
        self.later.append([due, bytes(out), addr])
        self.pending = True

    def _request(self, req, addr, now, mcast=False):
        nums = req.nums
        for k in range(req.count):  # an index scan: no option list is built
            num = nums[k]
            if num & 1 and (num > _PROXY_SCHEME or not (_KNOWN_CRITICAL >> (num >> 1)) & 1):
                if req.mtype == _NON:
                    if not mcast:
                        self._reset(req.mid, addr)  # rejecting a NON (RFC 7252 5.4.1)
                    return None
                return self._reply(req, _BAD_OPTION, -1, ("unknown critical option %d" % num).encode())
            elif num == _PROXY_URI or num == _PROXY_SCHEME:
                return self._reply(req, _PROXYING_NOT_SUPPORTED, -1, b"no proxy here")
        res = None
        for path in self.routes:
            if req.path_is(path):
                res = self.routes[path]
                break
        if res is None:
            return self._reply(req, _NOT_FOUND, -1, b"no such resource")
        block1 = -1
        if req.opt(_BLOCK1) is not None and (req.code == _PUT or req.code == _POST):
            if self.block1 is None:
                from firmware.blockwise import Block1
                self.block1 = Block1(self.max_payload)
            code, block1 = self.block1.feed(req, path, addr, now)
            if code == _REQUEST_ENTITY_TOO_LARGE:
                return self._reply(req, code, -1, b"payload too large", size1=self.max_payload)
            if code is not None:
                return self._reply(req, code, -1, b"" if code == _CONTINUE else b"block out of order",
                                   block1=block1)
        if len(req.payload) > self.max_payload:
            return self._reply(req, _REQUEST_ENTITY_TOO_LARGE, -1, b"payload too large",
                               size1=self.max_payload)
        # No ETags here: If-None-Match fails on an existing resource, If-Match only matches "exists".
        if req.find(_IF_NONE_MATCH) >= 0:
            return self._reply(req, _PRECONDITION_FAILED, -1, b"resource exists")
        for k in range(req.count):
            if nums[k] == _IF_MATCH and req.ends[k] > req.starts[k]:
                return self._reply(req, _PRECONDITION_FAILED, -1, b"no ETag matches")
        try:
            code, fmt, payload = res.handle(req)
        except MemoryError:
            # No room, say for a module loaded on first use: a temporary condition (RFC 7252
            # 5.9.3.4). The answer is built in preallocated buffers; a log line would allocate.
            return self._reply(req, _SERVICE_UNAVAILABLE, -1, b"out of memory")
        except Exception as e:
            log.error("handler for /%s failed: %r", res.path.decode(), e)
            return self._reply(req, _INTERNAL_SERVER_ERROR, -1, b"internal error")
        if mcast and not payload:
            return None  # e.g. a filter that matched nothing: stay silent (RFC 6690 4.1)
        observe = -1
        if res.observable and req.code == _GET and not mcast:
            obs = req.opt_uint(_OBSERVE)
            if obs is not None:
                if obs == 0 and code == _CONTENT:
                    if self.observers.add(addr, req.token, res, fmt, now) >= 0:
                        self.seq = observe = (self.seq + 1) & 0xFFFFFF
                        log.info("observer %s on /%s (%d/%d)", addr_str(addr), res.path.decode(),
                                 len(self.observers), self.observers.capacity)
                    else:
                        log.info("observer table full; %s gets a plain response", addr_str(addr))
                else:
                    # Deregistration, or a failed registration: forget any entry (RFC 7641 3.6, 4.1).
                    i = self.observers.find(addr, req.token)
                    if i >= 0:
                        self._drop(i, "deregistered")
        return self._reply(req, code, fmt, payload, observe, block1=block1)

    def _reply(self, req, code, fmt, payload, observe=-1, size1=-1, block1=-1):
        block = -1
        size2 = -1
        if code >> 5 == 2:
            b2 = req.opt(_BLOCK2)
            if b2 is not None or len(payload) > (16 << _MAX_SZX):
                from firmware.blockwise import block2  # rare: loaded on first use
                bad, payload, block, size2 = block2(b2, payload)
                if bad:
                    return self._reply(req, _BAD_OPTION, -1, payload)
        w = self.writer
        if req.mtype == _CON:
            w.reply_header(_ACK, code, req.mid, req)
        else:
            w.reply_header(_NON, code, self.next_mid(), req)
        if observe >= 0:
            w.option_uint(_OBSERVE, observe)
        if fmt >= 0:
            w.option_uint(_CONTENT_FORMAT, fmt)
        if observe >= 0:
            w.option_uint(_MAX_AGE, self.max_age)
        if block >= 0:
            w.option_uint(_BLOCK2, block)
        if block1 >= 0:
            w.option_uint(_BLOCK1, block1)
        if size2 >= 0:
            w.option_uint(_SIZE2, size2)
        if size1 >= 0:
            w.option_uint(_SIZE1, size1)
        w.payload(payload)
        return w.view()

    # -- observers -------------------------------------------------------------------------

    def changed(self, resource):
        """A resource's state changed: its observers are owed a notification (sent by service())."""
        if self.observers.mark(resource):
            self.pending = True

    def _drop(self, i, reason):
        obs = self.observers
        log.info("observer %s removed: %s", addr_str(obs.addrs[i]), reason)
        j = self.outbox.find_tag(i)
        if j >= 0:
            self.outbox.free(j)
        obs.remove(i)

    def _acked(self, addr, mid):
        tag = self.outbox.pop(addr, mid)
        if tag is None:
            return
        if type(tag) is not int:
            tag.acked()  # our request was accepted; its response comes separately
        elif self.observers.dirty[tag]:
            self.pending = True  # the state moved on while the CON was in flight

    def _rejected(self, addr, mid):
        # An RST answering a notification means the client has forgotten the observation.
        tag = self.outbox.pop(addr, mid)
        if tag is None:
            tag = self.observers.find_mid(addr, mid)
            if tag < 0:
                return
        if type(tag) is not int:
            tag.failed()
            return
        self._drop(tag, "reset by client")

    def _notification(self, i, mtype, mid):
        obs = self.observers
        fmt = obs.formats[i]
        w = self.writer
        w.header(mtype, _CONTENT, mid, obs.tokens[i])
        self.seq = (self.seq + 1) & 0xFFFFFF  # the Observe sequence number (RFC 7641 4.4)
        w.option_uint(_OBSERVE, self.seq)
        w.option_uint(_CONTENT_FORMAT, fmt)
        w.option_uint(_MAX_AGE, self.max_age)
        w.payload(obs.resources[i].render(fmt))
        return w.view()

    def _notify(self, i, now, con):
        obs = self.observers
        mid = self.next_mid()
        obs.dirty[i] = False
        obs.last_mid[i] = mid
        addr = obs.addrs[i]
        if con:
            data = bytes(self._notification(i, _CON, mid))
            self.outbox.add(addr, mid, data, i, now)
            obs.nons[i] = 0
            obs.last_con[i] = now
            self.send(data, addr)
        else:
            obs.nons[i] += 1
            self.send(self._notification(i, _NON, mid), addr)

    def service(self):
        """Retransmit, send owed notifications and keep-alives. Returns ms until it is due again."""
        now = self.clock()
        obs = self.observers
        box = self.outbox
        for j in range(box.capacity):
            if not box.due(j, now):
                continue
            tag = box.tags[j]
            if not box.backoff(j, now):
                box.free(j)
                if type(tag) is not int:
                    tag.failed()
                else:
                    self._drop(tag, "no ACK after %d retransmissions" % box.retries[j])
                continue
            if type(tag) is int and obs.dirty[tag]:
                # The state moved on: send the latest instead, as a new message (RFC 7641 4.5.2).
                mid = self.next_mid()
                obs.dirty[tag] = False
                obs.last_mid[tag] = mid
                box.replace(j, mid, bytes(self._notification(tag, _CON, mid)))
            self.send(box.data[j], box.addrs[j])
        self.pending = False
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
        if self.client is not None:
            wait = min(wait, self.client.tick(now))
        keepalive = self.keepalive_ms
        for i in range(obs.capacity):
            if obs.addrs[i] is None:
                continue
            since = ticks_diff(now, obs.last_con[i])
            if obs.dirty[i] or since >= keepalive:
                if box.find_tag(i) >= 0:
                    continue  # a CON is in flight; it carries the latest state when it goes again
                self._notify(i, now, since >= keepalive or obs.nons[i] + 1 >= self.con_every)
            elif keepalive - since < wait:
                wait = keepalive - since
        return box.next_deadline(now, wait)
