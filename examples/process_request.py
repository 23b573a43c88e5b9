"""Seed example "Server with Custom Request Processing": only the import lines changed."""

import asyncio

import ripple as websockets
from ripple import Request, Response


async def process_request(connection, request: Request):
    """Custom request processing before WebSocket upgrade."""
    # Check custom header
    api_key = request.headers.get("X-API-Key")
    if not api_key or api_key != "valid-api-key":
        return Response(403, "Forbidden", b"Invalid API key")

    # Allow upgrade to proceed
    return None


async def api_handler(websocket):
    """API handler for authenticated clients."""
    await websocket.send("API connection established")

    async for message in websocket:
        # Process API commands
        if message.startswith("GET /"):
            await websocket.send('{"status": "success", "data": "..."}')
        else:
            await websocket.send('{"error": "Unknown command"}')


async def main():
    async with websockets.serve(
        api_handler,
        "localhost",
        8765,
        process_request=process_request,
        compression="deflate",
    ):
        print("API server started on ws://localhost:8765")
        await asyncio.Future()


asyncio.run(main())
