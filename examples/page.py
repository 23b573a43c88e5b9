"""A web page and a WebSocket endpoint on the same port.

``GET /`` without an Upgrade header gets an HTML page whose script connects
back to ``/ws``; ``/ws`` upgrades. ``process_request`` answers the plain HTTP
requests, and ``origins=`` keeps pages from other sites from opening ``/ws``
in a visitor's browser (cross-site WebSocket hijacking; see docs/security.md).
"""

import asyncio

import ripple

PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>ripple</title></head>
<body>
<p id="log">connecting...</p>
<script>
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onopen = () => ws.send("hello from the page");
ws.onmessage = (event) => { document.getElementById("log").textContent = event.data; };
</script>
</body>
</html>
"""


def process_request(connection, request):
    path = request.path.partition("?")[0]
    if path == "/ws":
        return None  # the WebSocket handshake (a plain GET here gets a 426)
    if path == "/" and request.method == "GET" and "Upgrade" not in request.headers:
        return ripple.Response(200, "OK", {"Content-Type": "text/html; charset=utf-8"}, PAGE)
    return connection.respond(404, "not found; the page is / and the WebSocket endpoint /ws")


async def echo(websocket):
    async for message in websocket:
        await websocket.send(f"echo: {message}")


async def main():
    async with ripple.serve(
        echo,
        "localhost",
        8765,
        process_request=process_request,
        # The page's own origin, and None for clients that send no Origin.
        origins=["http://localhost:8765", "http://127.0.0.1:8765", None],
    ):
        print("Page and WebSocket server started on http://localhost:8765/")
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
