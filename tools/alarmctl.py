#!/usr/bin/env python3
"""Read, set and watch the alarm from a computer, with or without OSCORE keys.

  .venv/bin/python tools/alarmctl.py get coap://192.168.1.57/alarm
  .venv/bin/python tools/alarmctl.py put coap://192.168.1.57/alarm ON
  .venv/bin/python tools/alarmctl.py observe coap://192.168.1.57/alarm        # every change
  .venv/bin/python tools/alarmctl.py discover 192.168.1.57
  .venv/bin/python tools/alarmctl.py --credentials keys/laptop/credentials.json put coap://192.168.1.57/alarm OFF

The target is a coap:// URI, or just the board's address (192.168.1.57, 127.0.0.1:5700): then
/alarm (/.well-known/core for discover). With --credentials (from `make keys`) every request is
protected with OSCORE (RFC 8613), and a URI the file has no key for is refused rather than sent
in the clear. Built on aiocoap's library API; unlike `aiocoap-client --observe` of aiocoap
0.4.17 (aiocoap#395), observe prints every notification, one per line.

Exit codes: 0 done; 1 the board answered with an error (4.xx, 5.xx) or ended the observation;
2 a mistake in the command line; 3 no answer (address, port, network); 4 the credentials cannot
be used (missing, invalid, in use by another program, no key for this URI).
"""
import argparse
import asyncio
import gc
import json
import os
import re
import sys

COAP_PORT = 5683
FORMATS = {"text": 0, "json": 50, "cbor": 60}
WAIT = 15.0   # seconds for an answer, unless --timeout says otherwise

OK, ERROR, USAGE, NO_ANSWER, CREDENTIALS = 0, 1, 2, 3, 4


class Failure(Exception):
    """What to print (one line, on stderr) and the exit code."""

    def __init__(self, code, text):
        super().__init__(text)
        self.code = code


def target_uri(text, command):
    """A URI as aiocoap and the credentials file write it: the default port left out."""
    default = "/.well-known/core" if command == "discover" else "/alarm"
    if "://" not in text:
        text = "coap://" + text
    m = re.fullmatch(r"coap://(\[[0-9A-Fa-f:.]+\]|[^/:\[\]?#]+)(?::(\d*))?(/[^#]*)?", text)
    if not m:
        raise Failure(USAGE, "%s is not a coap:// URI nor a board's address (192.168.1.57, "
                             "127.0.0.1:5700, coap://192.168.1.57/alarm)" % text)
    host, port, rest = m.group(1), m.group(2), m.group(3)
    port = f":{port}" if port and int(port) != COAP_PORT else ""
    return "coap://%s%s%s" % (host.lower(), port, rest if rest and rest != "/" else default)


def show(payload, content_format):
    """A payload as a line of text: text and JSON as they are, CBOR as JSON."""
    if content_format == 60:
        try:
            import cbor2
            return json.dumps(cbor2.loads(payload), separators=(",", ":"))
        except Exception:  # noqa: BLE001  undecodable: show the bytes
            return payload.hex()
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.hex()


def detail(e):
    """aiocoap's own words for an error (its str() of some is only the class name)."""
    text = str(e.args[0]) if e.args and str(e.args[0]) else str(e)
    return text or type(e).__name__


def links(payload):
    """RFC 6690 link format, one link a line."""
    return "\n".join(re.split(r",(?=<)", payload.decode("utf-8", "replace")))


class Ctl:
    def __init__(self, args):
        self.args = args
        self.ctx = None
        self.protected = False

    # -- the aiocoap context and its credentials ---------------------------------------------

    async def open(self, uri):
        import aiocoap
        self.ctx = await aiocoap.Context.create_client_context()
        if self.args.credentials:
            self.load_credentials(uri)

    def load_credentials(self, uri):
        import aiocoap
        from aiocoap.credentials import CredentialsMissingError
        path = self.args.credentials
        try:
            with open(path) as f:
                data = json.load(f)
        except OSError as e:
            raise Failure(CREDENTIALS, "cannot read the credentials %s: %s (make keys NAME=... "
                                       "DEVICE=... writes keys/NAME/credentials.json)" % (path, e.strerror or e))
        except ValueError as e:
            raise Failure(CREDENTIALS, "the credentials %s are not valid JSON: %s" % (path, e))
        if not isinstance(data, dict):
            raise Failure(CREDENTIALS, "the credentials %s must hold a JSON object" % path)
        # A relative basedir is taken from the file's folder (aiocoap itself would take it from
        # the working directory).
        here = os.path.dirname(os.path.abspath(path))
        for v in data.values():
            o = v.get("oscore") if isinstance(v, dict) else None
            if isinstance(o, dict) and isinstance(o.get("basedir"), str):
                o["basedir"] = os.path.join(here, o["basedir"])
        try:
            self.ctx.client_credentials.load_from_dict(data)
        except Exception as e:  # noqa: BLE001  filelock.Timeout, LoadError, KeyError, ...
            if type(e).__name__ == "Timeout":
                raise Failure(CREDENTIALS, "the key in %s is in use by another program (aiocoap "
                                           "locks a context directory: one program at a time); stop "
                                           "that one, or give this one a key of its own (make keys "
                                           "NAME=...)" % path)
            raise Failure(CREDENTIALS, "the credentials %s cannot be used: %s" % (path, e))
        try:
            found = self.ctx.client_credentials.credentials_from_request(
                aiocoap.Message(code=aiocoap.GET, uri=uri))
        except CredentialsMissingError:
            found = None
        if found is None or not hasattr(found, "protect"):
            raise Failure(CREDENTIALS, "%s has no OSCORE key for %s (it has keys for: %s); "
                                       "nothing was sent" % (path, uri, ", ".join(data) or "nothing"))
        self.protected = True

    async def close(self):
        if self.ctx is not None:
            await self.ctx.shutdown()
            # The security contexts write their sequence numbers back and unlock when freed.
            self.ctx.client_credentials.clear()
            self.ctx = None
            gc.collect()

    # -- requests ----------------------------------------------------------------------------

    def message(self, code, uri, **kw):
        import aiocoap
        opts = {}
        if self.args.accept:
            opts["accept"] = FORMATS[self.args.accept]
        opts.update(kw)
        return aiocoap.Message(code=code, uri=uri, **opts)

    async def answer(self, pr, uri, timeout):
        import aiocoap.error as error
        try:
            return await asyncio.wait_for(pr.response, timeout)
        except asyncio.TimeoutError:
            raise Failure(NO_ANSWER, "no answer from %s within %g s: is the board on, and the "
                                     "address and port right?" % (uri, timeout))
        except error.NetworkError as e:
            raise Failure(NO_ANSWER, "no answer from %s: %s: is the board on, and the address "
                                     "and port right?" % (uri, detail(e)))
        except Exception as e:  # noqa: BLE001
            plain = getattr(e, "plain_message", None)
            if plain is not None:  # a protected request answered in the clear
                raise Failure(ERROR, "%s: the board answered without protection: %s. It does not "
                                     "have this key (revoked or made again, or the board has not "
                                     "got the config with it yet)" % (uri, self.describe(plain)))
            raise Failure(ERROR, "%s: %s: %s" % (uri, type(e).__name__, e))

    @staticmethod
    def describe(response):
        text = "%s %s" % (response.code.dotted, response.code.name_printable)
        if response.payload:
            text += ": " + response.payload.decode("utf-8", "replace")
        return text

    def check(self, response, uri):
        if response.code.is_successful():
            return
        text = "%s: %s" % (uri, self.describe(response))
        if response.code.dotted == "4.01" and not self.protected:
            text += ("; the board wants OSCORE for this: use --credentials with a key of yours "
                     "(make keys NAME=... DEVICE=... writes keys/NAME/credentials.json)")
        raise Failure(ERROR, text)

    def out(self, response, discover=False):
        if discover and response.opt.content_format == 40:
            print(links(response.payload), flush=True)
        else:
            print(show(response.payload, response.opt.content_format), flush=True)

    async def once(self, code, uri, **kw):
        pr = self.ctx.request(self.message(code, uri, **kw))
        response = await self.answer(pr, uri, self.args.timeout or WAIT)
        self.check(response, uri)
        return response

    async def observe(self, uri):
        import aiocoap.error as error
        loop = asyncio.get_running_loop()
        stop = loop.time() + self.args.timeout if self.args.timeout else None
        pr = self.ctx.request(self.message(1, uri, observe=0))
        first = await self.answer(pr, uri, min(WAIT, self.args.timeout or WAIT))
        self.check(first, uri)
        self.out(first)
        seen = 1
        if self.args.count and seen >= self.args.count:
            pr.observation.cancel()
            return OK
        if first.opt.observe is None:
            raise Failure(ERROR, "%s answered, but did not take the observation (a full observer "
                                 "table answers so): try again later" % uri)
        it = pr.observation.__aiter__()
        while True:
            try:
                if stop is None:
                    n = await it.__anext__()
                else:
                    left = stop - loop.time()
                    if left <= 0:
                        raise asyncio.TimeoutError
                    n = await asyncio.wait_for(it.__anext__(), left)
            except asyncio.TimeoutError:
                pr.observation.cancel()
                return OK   # the time asked for is over
            except StopAsyncIteration:
                raise Failure(ERROR, "%s ended the observation" % uri)
            except error.Error as e:
                if getattr(e, "code", None) is not None and hasattr(e, "response"):
                    raise Failure(ERROR, "%s ended the observation: %s" % (uri, self.describe(e.response)))
                raise Failure(ERROR if not isinstance(e, error.NetworkError) else NO_ANSWER,
                              "%s ended the observation: %s" % (uri, detail(e)))
            if not n.code.is_successful():
                raise Failure(ERROR, "%s ended the observation: %s" % (uri, self.describe(n)))
            self.out(n)
            seen += 1
            if self.args.count and seen >= self.args.count:
                pr.observation.cancel()
                return OK

    async def run(self):
        import aiocoap
        a = self.args
        uri = target_uri(a.target, a.command)
        await self.open(uri)
        try:
            if a.command == "get":
                self.out(await self.once(aiocoap.GET, uri))
            elif a.command == "put":
                word = a.value.strip().upper()
                self.out(await self.once(aiocoap.PUT, uri, payload=word.encode(), content_format=0))
            elif a.command == "discover":
                self.out(await self.once(aiocoap.GET, uri), discover=True)
            else:
                return await self.observe(uri)
            return OK
        finally:
            await self.close()


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Exit codes: 0 done, 1 the board answered an error, 2 usage, "
                                        "3 no answer, 4 credentials unusable.")

    def options(p, default):
        p.add_argument("--credentials", metavar="FILE", default=default,
                       help="an aiocoap credentials file (make keys writes keys/NAME/credentials.json): "
                            "protect every request with OSCORE")
        p.add_argument("--accept", choices=sorted(FORMATS), default=default,
                       help="the format to ask for (default: the board's, text)")
        p.add_argument("--timeout", type=float, metavar="S", default=default,
                       help="get/put/discover: give up after S seconds (default %g); observe: "
                            "stop after S seconds (default: until Ctrl-C)" % WAIT)
        p.add_argument("--count", type=int, metavar="N", default=default,
                       help="observe: stop after N values (the first one included)")

    options(ap, None)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = argparse.SUPPRESS
    for name, helptext in (("get", "read the state"), ("put", "set the state: ON or OFF"),
                           ("observe", "print the state and every change, one line each"),
                           ("discover", "list the board's resources (/.well-known/core)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("target", help="coap://ADDRESS[:PORT]/PATH, or just ADDRESS[:PORT]")
        if name == "put":
            p.add_argument("value", metavar="ON|OFF", type=str)
        options(p, s)
    args = ap.parse_args(argv)
    if args.command == "put" and args.value.strip().upper() not in ("ON", "OFF"):
        ap.error("put takes ON or OFF, not %r" % args.value)
    if args.timeout is not None and args.timeout <= 0:
        ap.error("--timeout must be more than 0 seconds")
    if args.count is not None and args.count < 1:
        ap.error("--count must be 1 or more")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return asyncio.run(Ctl(args).run())
    except Failure as f:
        print("alarmctl: %s" % f, file=sys.stderr)
        return f.code
    except KeyboardInterrupt:
        return OK   # Ctrl-C is how an observation ends


if __name__ == "__main__":
    sys.exit(main())
