"""Seed example "Authenticated Server": only the import lines changed to ripple."""

import asyncio

import ripple as websockets
from ripple import basic_auth


@basic_auth("admin", "secret123")
async def protected_handler(websocket):
    """Handler that requires authentication."""
    await websocket.send("Welcome! You are authenticated.")

    async for message in websocket:
        if message.lower() == "status":
            await websocket.send("Server is running normally")
        else:
            await websocket.send(f"Received: {message}")


async def main():
    async with websockets.serve(
        protected_handler,
        "localhost",
        8765,
        extra_headers={"Server": "MyWebSocketServer/1.0"},
    ):
        print("Protected server started on ws://localhost:8765")
        print("Use Authorization: Basic YWRtaW46c2VjcmV0MTIz")
        await asyncio.Future()


asyncio.run(main())
