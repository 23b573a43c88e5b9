"""Seed example "Unix Domain Socket Server": only the import line changed to ripple."""

import asyncio
import os

import ripple as websockets


async def unix_handler(websocket):
    """Handler for Unix socket connections."""
    await websocket.send("Connected via Unix socket")

    async for message in websocket:
        await websocket.send(f"Unix echo: {message}")


async def main():
    socket_path = "/tmp/websocket.sock"

    # Remove existing socket file
    if os.path.exists(socket_path):
        os.unlink(socket_path)

    async with websockets.unix_serve(unix_handler, socket_path):
        print(f"Unix WebSocket server started on {socket_path}")
        await asyncio.Future()


asyncio.run(main())
