# On a board the unicast socket is bound to the station's address (so only the group socket hears
# multicast). When Wi-Fi comes back with another address, the server must follow it.
import asyncio
import socket

import pytest

from firmware import compat, config
from host import coapmsg as coap
from firmware.start import build
from harness import free_udp_port, request


@pytest.fixture(autouse=True)
def on_a_board(monkeypatch):
    # A board's sockets (SO_REUSEADDR, to rebind after an address change); the host has none.
    monkeypatch.setattr(compat, "machine", object())


def test_server_follows_a_new_address_after_reconnect():
    port = free_udp_port()
    cfg = dict(config.DEFAULTS, port=port, multicast=True, bind="0.0.0.0", input_pin=None)

    async def ask(loop, client, host):
        await loop.sock_sendto(client, request(coap.GET, mid=7), (host, port))
        data = await asyncio.wait_for(loop.sock_recv(client, 2048), 2)
        return coap.parse(data)

    async def scenario():
        loop = asyncio.get_running_loop()
        app = build(cfg, ip="127.0.0.2")  # as if DHCP gave 127.0.0.2 at boot
        assert app.bound == "127.0.0.2"
        runner = asyncio.create_task(app.run())
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        try:
            assert (await ask(loop, client, "127.0.0.2")).payload == b"OFF"
            app.network_up("127.0.0.3")  # reconnected, with another address
            r = await ask(loop, client, "127.0.0.3")
            assert r.code == coap.CONTENT and r.payload == b"OFF"
            app.network_up("127.0.0.3")  # same address again: nothing to do
            assert (await ask(loop, client, "127.0.0.3")).payload == b"OFF"
        finally:
            runner.cancel()
            app.rx.cancel()
            client.close()
            app.sock.close()
            if app.group_sock is not None:
                app.group_sock.close()

    asyncio.run(scenario())


def test_wifi_up_after_boot_binds_to_the_address_and_joins_the_group():
    port = free_udp_port()
    cfg = dict(config.DEFAULTS, port=port, multicast=True, bind="0.0.0.0", input_pin=None)

    async def scenario():
        loop = asyncio.get_running_loop()
        app = build(cfg, ip=None)  # Wi-Fi still connecting when the app started
        app.group_sock.close()   # as on a board, where joining needs a network
        app.group_sock = None
        runner = asyncio.create_task(app.run())
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        try:
            await asyncio.sleep(0)
            app.network_up("127.0.0.4")
            assert app.bound == "127.0.0.4" and app.group_sock is not None
            await loop.sock_sendto(client, request(coap.GET, mid=8), ("127.0.0.4", port))
            r = coap.parse(await asyncio.wait_for(loop.sock_recv(client, 2048), 2))
            assert r.payload == b"OFF"
        finally:
            runner.cancel()
            app.rx.cancel()
            client.close()
            app.sock.close()
            app.group_sock.close()

    asyncio.run(scenario())
