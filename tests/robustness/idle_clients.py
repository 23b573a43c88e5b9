"""A child process holding many idle WebSocket connections (test_overload.py).

    python idle_clients.py PORT COUNT

Opens COUNT connections to 127.0.0.1:PORT in batches, sends each a handshake
(no extensions offered), prints ``ready OPEN REFUSED`` once every answer is
in, then holds the connections, silent, until stdin closes. Raw sockets, not
ripple's client: the figures are about the server's memory.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import sys

BATCH = 250


class Idle(asyncio.Protocol):
    def __init__(self, answered: asyncio.Future[bytes]) -> None:
        self.answered = answered
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            return  # frames (pings) after the handshake: ignored, unanswered
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.answered.set_result(self.buf.split(b"\r\n", 1)[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_result(b"lost")


async def main(port: int, count: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    opened = refused = 0
    for start in range(0, count, BATCH):
        futures = [loop.create_future() for _ in range(min(BATCH, count - start))]
        pairs = await asyncio.wait_for(
            asyncio.gather(
                *(loop.create_connection(lambda f=f: Idle(f), "127.0.0.1", port) for f in futures)
            ),
            60,
        )
        transports += [t for t, _ in pairs]
        for status in await asyncio.wait_for(asyncio.gather(*futures), 60):
            if status.startswith(b"HTTP/1.1 101"):
                opened += 1
            else:
                refused += 1
    print(f"ready {opened} {refused}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    for transport in transports:
        transport.abort()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
