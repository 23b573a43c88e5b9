"""Seed example "Chat Server with Broadcasting": only the import line changed to ripple."""

import asyncio
import json
from typing import Set

import ripple as websockets

# Keep track of connected clients
clients: Set[websockets.ServerConnection] = set()


async def chat_handler(websocket):
    """Chat server handler with broadcasting."""
    # Register client
    clients.add(websocket)
    print(f"Client connected: {websocket.remote_address}")

    try:
        async for message in websocket:
            try:
                # Parse JSON message
                data = json.loads(message)
                chat_message = {
                    "user": data.get("user", "Anonymous"),
                    "message": data.get("message", ""),
                    "timestamp": asyncio.get_event_loop().time(),
                }

                # Broadcast to all connected clients
                broadcast_message = json.dumps(chat_message)
                websockets.broadcast(clients, broadcast_message)

            except json.JSONDecodeError:
                # Send error response
                error = {"error": "Invalid JSON format"}
                await websocket.send(json.dumps(error))

    except websockets.ConnectionClosedError:
        pass
    finally:
        # Unregister client
        clients.discard(websocket)
        print(f"Client disconnected: {websocket.remote_address}")


async def main():
    async with websockets.serve(
        chat_handler,
        "localhost",
        8765,
        ping_interval=30,
        ping_timeout=10,
        max_size=1024 * 10,  # 10KB max message
    ):
        print("Chat server started on ws://localhost:8765")
        await asyncio.Future()


asyncio.run(main())
