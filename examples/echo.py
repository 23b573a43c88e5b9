"""Seed example "Basic Echo Server": only the import line changed to ripple."""

import asyncio

import ripple as websockets


async def echo_handler(websocket):
    """Simple echo handler that returns received messages."""
    async for message in websocket:
        await websocket.send(f"Echo: {message}")


async def main():
    # Start server on localhost:8765
    async with websockets.serve(echo_handler, "localhost", 8765):
        print("WebSocket server started on ws://localhost:8765")
        await asyncio.Future()  # Run forever


asyncio.run(main())
