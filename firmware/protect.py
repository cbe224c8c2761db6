# The protection layer: OSCORE (RFC 8613) between the message layer and the site, and the access
# policy for unprotected requests. Loaded at boot (oscore_boot.make) only when config.json has an
# "oscore" context: without one, this module, oscore.py and oscore_crypto.py never load.
# docs/design.md.
#
#   endpoint ──► Protect.request ──► site.request       (endpoint.handler is this object)
#                 unprotect the request (8.2), rebuild it as the inner request in a reader of
#                 its own, let the site answer it, protect the site's answer (8.3)
#   observe.render ──► Protect.protect                   (notifications of protected observers;
#                                                          Protect.watch wraps observe's methods)
from firmware import coap, log, oscore
from firmware.compat import const

_CON = const(0)
_GET = const(0x01)
_POST = const(0x02)
_PUT = const(0x03)
_CHANGED = const(0x44)
_CONTENT = const(0x45)
_BAD_REQUEST = const(0x80)
_UNAUTHORIZED = const(0x81)
_BAD_OPTION = const(0x82)
_SERVICE_UNAVAILABLE = const(0xA3)
_URI_HOST = const(3)
_OBSERVE = const(6)
_URI_PORT = const(7)
_OSCORE = const(9)
_MAX_AGE = const(14)
_PROXY_URI = const(35)
_PROXY_SCHEME = const(39)
_BLOCK1 = const(27)
_REQUEST_ENTITY_INCOMPLETE = const(0x88)
_ECHO = const(252)
_WKC = (b".well-known", b"core")
_CLASS_U = const((1 << 3) | (1 << 7) | (1 << 29))   # Reader.flags: Uri-Host, Uri-Port, 29 and up

# config "unprotected": what a request without OSCORE may do
_ALL = const(0)    # anything (no access control)
_READ = const(1)   # GET (reads, Observe, discovery); anything else 4.01
_NONE = const(2)   # /.well-known/core only

FILE = "oscore_seq.json"   # next to config.json: {"<Sequences.name()>": first unused number}


class Sequences:
    """The Sender Sequence Numbers of every context, persisted ahead (RFC 8613 7.2.1, B.1.1)
    in one small file, written atomically (a temporary file, then a rename) only when a context
    has used up its reserve: once after a boot, then once per `step` numbers. `writes` counts
    the writes (tests, figures). Where a file system cannot rename over a file, the old file is
    removed first: a reset (or a failure) just then leaves only the temporary file, which the
    boot reads too (oscore_boot.py), so no number is ever taken to be unused twice."""

    def __init__(self, path, contexts):
        self.path = path
        self.contexts = contexts
        self.writes = 0
        self.broken = False   # the file is there but unreadable: no number is known unused

    def ready(self, ctx):
        """True when ctx may take a sequence number: persists ahead first when it has to."""
        if not ctx.sequence.due():
            return True
        if self.broken:
            return False
        import os
        # Every context that is due gets its reserve in the same write (all of them after a boot).
        want = {}
        for c in self.contexts:
            s = c.sequence
            want[self.name(c)] = s.reserve() if s.due() else s.limit
        text = "{%s}\n" % ", ".join('"%s": %d' % kv for kv in want.items())
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(text)
            try:
                os.rename(tmp, self.path)
            except OSError:  # FAT cannot rename over a file
                os.remove(self.path)
                os.rename(tmp, self.path)
        except OSError as e:
            log.error("oscore: cannot save %s: %r", self.path, e)
            return False
        self.writes += 1
        for c in self.contexts:
            c.sequence.persisted(want[self.name(c)])
        log.info("oscore: sequence numbers reserved (write %d of %s)", self.writes, self.path)
        return True

    @staticmethod
    def name(c):
        """The file's name for context c's numbers: what its nonces hang on, the Sender Key and
        the nonce of Partial IV 0 (5.2), hashed (nothing of a key can be read back from it). Two
        contexts with the same of both would share nonces, and a context whose IDs change but
        not its secret keeps its count; a Recipient ID as the name would allow neither."""
        from binascii import hexlify
        from hashlib import sha256
        return hexlify(sha256(c._send + c._sn.to_bytes(13, "big")).digest()[:8]).decode()


class Protect:
    """endpoint.handler in place of the site: the same request(req, addr, now, mcast)."""

    def __init__(self, endpoint, observe, contexts, policy, store):
        self.site = endpoint.handler
        self.endpoint = endpoint
        self.observe = observe
        self.contexts = contexts
        self.policy = policy
        self.store = store
        # The Echo value of this boot (RFC 9175; RFC 8613 B.1.2): a request carrying it was
        # made after this boot, so it may set the replay window.
        r = endpoint.rand
        self.echo = bytes(r(8) for _ in range(8))
        self.observe_value = None   # protect(): the outer Observe value of the message at hand
        self.block1 = None          # the context of the Block1 transfer under way (None: unprotected)
        endpoint.handler = self
        self.watch(observe)

    def watch(self, observe):
        """Each observer registered through OSCORE keeps its binding here, and its notifications
        are protected: the observe layer's register, forget, _drop (and failed) and render are
        wrapped on its instance, so that observe.py holds nothing of this (RAM without keys) but
        `key`, the binding of the request being answered, which register() and forget() also
        read. An observation made under one context is renewed or ended only under the same one:
        another client's key with the first one's address and token (a spoofed source) cannot
        take it over or cancel it."""
        keys = self.keys = {}   # slot: binding, only for the slots registered with OSCORE
        register, forget, drop, render = observe.register, observe.forget, observe._drop, observe.render

        def other(addr, token):
            # True when that observation was made under a context other than this request's
            k = keys.get(observe.find(addr, token))
            return k is not None and observe.key is not None and k[5] is not observe.key[5]

        def registered(addr, req, resource, fmt):
            if other(addr, req.token):
                return -1   # answered without Observe (RFC 7641 4.1); the observation stays
            n = register(addr, req, resource, fmt)
            if n >= 0:
                i = observe.find(addr, req.token)
                if observe.key is None:
                    keys.pop(i, None)
                else:
                    keys[i] = observe.key
            return n

        def forgotten(addr, token):
            if not other(addr, token):
                forget(addr, token)

        def dropped(i, reason):
            keys.pop(i, None)
            drop(i, reason)

        def rendered(i, mtype, mid):
            msg = render(i, mtype, mid)
            k = keys.get(i)
            # an observer registered with OSCORE: protected with its context under a fresh
            # Partial IV (RFC 8613 4.1.3.5.2)
            return msg if k is None else self.protect(k[5], k, msg, True)

        observe.register = registered
        observe.forget = forgotten
        observe._drop = observe.failed = dropped
        observe.render = rendered

    def request(self, req, addr, now, mcast):
        if req.flags & (1 << _OSCORE):
            if mcast:
                return None   # no group OSCORE: never an answer to the group
            return self.unprotect(req, addr, now)
        policy = self.policy
        if policy != _ALL and (req.code != _GET or policy == _NONE and not req.path_is(_WKC)):
            if mcast:
                return None
            return self.error(req, _UNAUTHORIZED, b"OSCORE required")
        if req.flags & (1 << _BLOCK1) and not self.same(req, None):
            return self.error(req, _REQUEST_ENTITY_INCOMPLETE, b"")
        return self.site.request(req, addr, now, mcast)

    def same(self, req, ctx):
        """A Block1 block goes on with the transfer under way (blockwise.py keeps one, by source
        and path) only under the context that began it (None: unprotected): another client's
        key, or none, from a spoofed source cannot add blocks to it. Block 0 of a PUT or POST (the
        site reassembles no other) begins one."""
        if req.code != _PUT and req.code != _POST:
            return True
        if req.opt_uint(_BLOCK1, 0) >> 4 == 0:
            self.block1 = ctx
        return self.block1 is ctx

    def error(self, req, code, why):
        """An unprotected error (RFC 8613 8.2): no OSCORE option, Max-Age 0, a short diagnostic,
        but none where the answer would pass 3x the request's bytes, as the site's answers to
        unverified sources never do (RFC 7252 11.3; README.md, "Under attack")."""
        w = self.endpoint.header(req, code)
        w.option_uint(_MAX_AGE, 0)
        if w.n + 1 + len(why) <= 3 * len(req.data):
            w.payload(why)
        return w.view()

    def unprotect(self, req, addr, now):
        # The outer code (POST, or FETCH for Observe) goes back into req before a protected answer
        # leaves: the duplicate cache, which reads it then, holds the answer as it holds a state
        # change's (messages.DedupCache), since the request can never be answered again (it is
        # now a replay) and a flood must not flush it before the client's retransmission.
        code = req.code
        status, ctx, pt, bind = oscore.verify_request(self.contexts, req.opt(_OSCORE), req.payload)
        if status and status != oscore.UNSYNCED:   # OK is 0: one test on the usual way
            if status == oscore.MALFORMED:
                return self.error(req, _BAD_OPTION, b"Failed to decode COSE")
            if status == oscore.NO_CONTEXT:
                return self.error(req, _UNAUTHORIZED, b"Security context not found")
            if status == oscore.REPLAY:
                return self.error(req, _UNAUTHORIZED, b"Replay detected")
            return self.error(req, _BAD_REQUEST, b"Decryption failed")
        if self.inner(req, pt) is None:
            req.code = code
            return self.answer(req, ctx, bind, _BAD_REQUEST, ())
        if status == oscore.UNSYNCED:
            # Authentic, but the window is unknown since the boot: fresh only with our Echo.
            if req.opt(_ECHO) != self.echo:
                req.code = code
                return self.answer(req, ctx, bind, _UNAUTHORIZED, ((_ECHO, self.echo),))
            ctx.replay.start(int.from_bytes(bind[1], "big"))
        if req.flags & (1 << _BLOCK1) and not self.same(req, ctx):
            req.code = code
            return self.answer(req, ctx, bind, _REQUEST_ENTITY_INCOMPLETE, ())
        obs = self.observe
        obs.key = bind   # an observation registered now keeps it, its context in it (observe.py)
        try:
            out = self.site.request(req, addr, now, False)
        finally:
            obs.key = None
            req.code = code
        if out is None:
            return None
        return self.protect(ctx, bind, out, False)

    def inner(self, req, pt):
        """The request the client protected, loaded into req, the endpoint's reader, in place of
        the outer one (no second reader: RAM): outer header (type, MID, token), then the
        plaintext pt (5.3: inner code, inner options, payload), with the outer Class U options
        merged in if there are any (merge()). None when pt is malformed."""
        if not pt:
            return None
        if req.flags & _CLASS_U:
            return self.merge(req, pt)
        # One buffer: the plaintext at the end, so that its code byte falls on the last header
        # byte, which the outer header's bytes (with the inner code) then overwrite.
        i = 4 + req.tkl
        buf = bytearray(i - 1 + len(pt))
        buf[i - 1:] = pt
        data = req.data
        for j in range(i):
            buf[j] = data[j]
        buf[1] = pt[0]
        try:
            return req.load(buf)
        except coap.CoapError:
            return None

    def merge(self, req, pt):
        # inner() for an outer request with Class U options (Uri-Host, Uri-Port, Proxy-*): rare,
        # so apart, keeping inner()'s frame small.
        data = req.data
        extra = []
        for k in range(req.count):
            num = req.nums[k]
            if num == _URI_HOST or num == _URI_PORT or num == _PROXY_URI or num == _PROXY_SCHEME:
                extra.append((num, bytes(data[req.starts[k]:req.ends[k]])))
        req.flags = 0   # inner() then loads pt the usual way
        if self.inner(req, pt) is None:
            return None
        try:
            # Both in option order: merged into the writer (free until the answer), reloaded.
            w = self.endpoint.writer.header(req.mtype, req.code, req.mid, req.token)
            j = 0
            for k in range(req.count):
                num = req.nums[k]
                while j < len(extra) and extra[j][0] <= num:
                    w.option(extra[j][0], extra[j][1])
                    j += 1
                w.option(num, req.data[req.starts[k]:req.ends[k]])
            for o in extra[j:]:
                w.option(o[0], o[1])
            w.payload(req.payload)
            return req.load(bytes(w.view()))
        except coap.CoapError:
            return None

    def answer(self, req, ctx, bind, code, opts):
        """A protected answer made here (4.01 with Echo, 4.00), not by the site."""
        w = self.endpoint.header(req, code)
        for o in opts:
            w.option(o[0], o[1])
        return self.protect(ctx, bind, w.view(), False)

    def protect(self, ctx, bind, msg, new_piv):
        """The message msg (encoded in the endpoint's writer) protected as the answer to bind
        (8.3): inner code, options and payload go into the ciphertext; outside stay the header,
        an outer Observe (then code 2.05, else 2.04) and the OSCORE option."""
        t = 4 + (msg[0] & 15)
        pt = self.plain(msg, t)   # a copy: the writer is rewritten below
        code = _CHANGED if self.observe_value is None else _CONTENT
        if (new_piv or bind[2]) and not self.store.ready(ctx):
            code = _SERVICE_UNAVAILABLE   # no sequence number may be used: say so, unprotected
        else:
            opt, ct = ctx.protect_response(pt, bind, new_piv)
        # The outer header: msg's type, MID and token. When msg is the writer's own message (it
        # is, but for answers made elsewhere), its header stays where it is.
        w = self.endpoint.writer
        if msg is w.v and w.n == len(msg):
            w.buf[1] = code
            w.n = t
            w.last = 0
        else:
            w.header((msg[0] >> 4) & 3, code, (msg[2] << 8) | msg[3], bytes(msg[4:t]))
        if code == _SERVICE_UNAVAILABLE:
            w.option_uint(_MAX_AGE, 0)
            w.payload(b"no sequence number")
            return w.view()
        if code == _CONTENT:
            w.option(_OBSERVE, self.observe_value)
        w.option(_OSCORE, opt)
        w.payload(ct)
        return w.view()

    def plain(self, msg, t):
        # The plaintext (5.3) of msg, whose options start at t: the code, then the options and
        # payload as they are, but for an Observe option, whose value goes outside (the inner one
        # is empty, 4.1.3.5.2) into self.observe_value (None without one). Options before it
        # (If-Match 1 .. If-None-Match 5) have deltas below 13; a response has none but ETag.
        self.observe_value = None
        i = t
        num = 0
        n = len(msg)
        while i < n and msg[i] != 0xFF:
            b = msg[i]
            num += b >> 4
            k = b & 15
            if num >= _OBSERVE or k > 12:
                if num == _OBSERVE and k < 13:
                    self.observe_value = bytes(msg[i + 1:i + 1 + k])
                    pt = bytearray(n - t + 1 - k)
                    pt[1:1 + i - t] = msg[t:i]
                    pt[1 + i - t] = b & 0xF0
                    pt[2 + i - t:] = msg[i + 1 + k:]
                    pt[0] = msg[1]
                    return pt
                break
            i += 1 + k
        pt = bytearray(n - t + 1)
        pt[1:] = msg[t:]
        pt[0] = msg[1]
        return pt
