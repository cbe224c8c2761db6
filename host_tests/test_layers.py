# The shape of the core (docs/design.md): each layer imports only the layers below it, board
# code never reaches for host-only code, and a new resource needs nothing but its own class.
import glob
import os
import re

from host import coapmsg as coap
from harness import ROOT, Stack, FakeClock, FakeSocket, request

# Lower layers first. A module may import those before it in this list, never those after.
LAYERS = ["compat", "log", "coap", "messages", "endpoint", "observe", "oscore_crypto", "oscore_keys", "oscore", "protect", "oscore_boot", "site",
          "alarm", "res_health", "res_alarm", "hardware", "app", "start"]


def _imports(name):
    with open(os.path.join(ROOT, "firmware", name + ".py")) as f:
        src = f.read()
    found = set(re.findall(r"from firmware\.(\w+) import", src))
    for names in re.findall(r"from firmware import ([\w, ]+)", src):
        found.update(n.strip() for n in names.split(","))
    found.update(re.findall(r"import firmware\.(\w+)", src))
    return found, src


def test_each_layer_imports_only_the_layers_below_it():
    for i, name in enumerate(LAYERS):
        found, _ = _imports(name)
        above = found & set(LAYERS[i:])
        assert not above, "%s imports %s, which sit(s) above it" % (name, sorted(above))


def test_board_code_never_imports_host_only_code():
    # host/ is never copied to a board (tools/build.py). Two places may name it, each only where
    # a board never goes: compat's CPython half, and the simulated pins when there is no machine.
    allowed = {("compat.py", "from host.compat_cpython import"), ("start.py", "from host.simpins import"),
               ("start.py", "from host import console")}
    for path in glob.glob(os.path.join(ROOT, "firmware", "*.py")):
        base = os.path.basename(path)
        with open(path) as f:
            for line in f:
                if re.search(r"\b(from|import) host\b", line):
                    assert any(base == b and line.strip().startswith(p) for b, p in allowed), \
                        "%s reaches for host-only code: %s" % (base, line.strip())


class Siren:
    """A second resource as a newcomer would write it (docs/design.md, "Adding a resource"):
    PUT a duty cycle in percent, GET it back, observe it."""
    path = b"siren"
    methods = (1 << coap.GET) | (1 << coap.PUT)
    formats = (coap.TEXT_PLAIN,)
    accepts = (coap.TEXT_PLAIN,)
    observable = True
    link = b'</siren>;rt="siren";ct=0;obs'

    def __init__(self):
        self.duty = 0
        self.notify = None          # bound by the site

    def render(self, fmt):
        return b"%d" % self.duty

    def handle(self, req, fmt):
        if req.code == coap.PUT:
            try:
                duty = int(req.payload)
            except ValueError:
                return coap.BAD_REQUEST, b"0 to 100"
            if not 0 <= duty <= 100:
                return coap.BAD_REQUEST, b"0 to 100"
            self.duty = duty
            self.notify()
            return coap.CHANGED, self.render(fmt)
        return coap.CONTENT, self.render(fmt)


def test_a_new_resource_is_one_class_and_the_site_does_the_rest():
    from firmware.site import WellKnownCore
    sock = FakeSocket()
    from firmware import config
    stack = Stack(sock, dict(config.DEFAULTS), FakeClock())
    siren = stack.add(Siren())
    stack.add(WellKnownCore([siren]))
    peer = ("10.0.5.1", 5683)

    def ask(data):
        stack.datagram(data, peer)
        stack.service()
        return [m for m, _ in sock.take()]

    (r,) = ask(request(coap.GET, "siren", mid=1, token=b"o", options=[(coap.OBSERVE, 0)]))
    assert (r.code, r.payload) == (coap.CONTENT, b"0") and r.opt(coap.OBSERVE) is not None
    got = ask(request(coap.PUT, "siren", mid=2, token=b"p", payload=b"40"))
    assert sorted((m.token, m.code, m.payload) for m in got) == [(b"o", coap.CONTENT, b"40"),
                                                                  (b"p", coap.CHANGED, b"40")]
    # What the site answers for every resource, from what the resource declared:
    (r,) = ask(request(coap.POST, "siren", mid=3, payload=b"1"))
    assert r.code == coap.METHOD_NOT_ALLOWED
    (r,) = ask(request(coap.GET, "siren", mid=4, options=[(coap.ACCEPT, coap.JSON)]))
    assert r.code == coap.NOT_ACCEPTABLE
    (r,) = ask(request(coap.PUT, "siren", mid=5, payload=b"1", options=[(coap.CONTENT_FORMAT, coap.JSON)]))
    assert r.code == coap.UNSUPPORTED_CONTENT_FORMAT
    (r,) = ask(request(coap.PUT, "siren", mid=6, payload=b"400"))
    assert r.code == coap.BAD_REQUEST and siren.duty == 40
    (r,) = ask(request(coap.GET, ".well-known/core", mid=7))
    assert r.payload == b'</siren>;rt="siren";ct=0;obs'
