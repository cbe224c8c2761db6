#!/usr/bin/env python3
"""The alarm resource on aiocoap, for tools/bench.py: what a Python user would otherwise run.

Same surface as the firmware's /alarm: GET (observable) and PUT ON/OFF, text/plain.
Usage: aiocoap_alarm.py PORT
"""
import asyncio
import sys

import aiocoap
import aiocoap.resource as resource


class Alarm(resource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.on = False

    def body(self):
        return b"ON" if self.on else b"OFF"

    async def render_get(self, request):
        return aiocoap.Message(payload=self.body(), content_format=0)

    async def render_put(self, request):
        word = request.payload.strip().upper()
        if word not in (b"ON", b"OFF"):
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=b"payload must be ON or OFF")
        on = word == b"ON"
        if on != self.on:
            self.on = on
            self.updated_state()
        return aiocoap.Message(code=aiocoap.CHANGED, payload=self.body(), content_format=0)


async def main(port):
    site = resource.Site()
    site.add_resource(["alarm"], Alarm())
    await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
