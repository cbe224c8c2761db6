# Peers this project did not write, against the firmware under the MicroPython VM.
import asyncio
import shutil
import subprocess

import pytest

from harness import assert_alarm_link, missing_tool, tool

COAP_CLIENT = shutil.which("coap-client-notls")
needs_libcoap = pytest.mark.skipif(COAP_CLIENT is None, reason=missing_tool("coap-client-notls"))


def coap_client(*args, timeout=15):
    p = subprocess.run([COAP_CLIENT] + list(args), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return p.stdout


# -- aiocoap -------------------------------------------------------------------------------

def test_aiocoap_get_put_and_observe(firmware):
    import aiocoap
    fw = firmware()
    uri = "coap://127.0.0.1:%d/alarm" % fw.port

    async def scenario():
        observer = await aiocoap.Context.create_client_context()
        writer = await aiocoap.Context.create_client_context()
        try:
            r = await writer.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response
            assert r.code == aiocoap.CONTENT and r.payload == b"OFF"
            assert r.opt.content_format == 0

            req = observer.request(aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0))
            first = await req.response
            assert first.payload == b"OFF" and first.opt.observe is not None
            seen = []
            notes = req.observation.__aiter__()   # one iterator: each notification once, in order
            for state in (b"ON", b"OFF"):
                r = await writer.request(aiocoap.Message(code=aiocoap.PUT, uri=uri, payload=state)).response
                assert r.code == aiocoap.CHANGED and r.payload == state
                n = await asyncio.wait_for(notes.__anext__(), 5)
                seen.append(n.payload)
            assert seen == [b"ON", b"OFF"]
            req.observation.cancel()
        finally:
            await observer.shutdown()
            await writer.shutdown()

    asyncio.run(scenario())


def test_aiocoap_client_command_line(firmware):
    fw = firmware()
    uri = "coap://127.0.0.1:%d/alarm" % fw.port
    run = lambda *a: subprocess.run([tool("aiocoap-client")] + list(a), capture_output=True, text=True,
                                    timeout=20)
    p = run("-m", "PUT", "--payload", "ON", uri)
    assert p.returncode == 0, p.stderr
    p = run(uri)
    assert p.stdout.strip() == "ON"


# -- libcoap ---------------------------------------------------------------------------------

@needs_libcoap
def test_coap_client_get_and_put(firmware):
    fw = firmware()
    uri = "coap://127.0.0.1:%d/alarm" % fw.port
    assert coap_client("-m", "get", uri).strip() == "OFF"
    assert coap_client("-m", "put", "-e", "ON", uri).strip() == "ON"
    fw.wait_for("output GPIO2 = 1")
    assert coap_client("-m", "get", uri).strip() == "ON"


@needs_libcoap
def test_coap_client_observe_sees_changes(firmware):
    fw = firmware()
    uri = "coap://127.0.0.1:%d/alarm" % fw.port
    obs = subprocess.Popen([COAP_CLIENT, "-s", "5", uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        fw.wait_for("observer 127.0.0.1:", timeout=5)
        coap_client("-m", "put", "-e", "ON", uri)
        coap_client("-m", "put", "-e", "OFF", uri)
        out, err = obs.communicate(timeout=15)
    finally:
        obs.kill()
    # coap-client prints each representation without a separator
    assert out.strip() == "OFFONOFF", (out, err)


@needs_libcoap
def test_coap_client_discovery(firmware):
    fw = firmware()
    out = coap_client("-m", "get", "coap://127.0.0.1:%d/.well-known/core" % fw.port)
    assert_alarm_link(out.strip().encode())
