"""Rooms on a hub: each connection joins the room named by its path.

    python examples/hub_rooms.py [--port 8765] [--redis redis://127.0.0.1:6379/0]

Connect to ws://127.0.0.1:8765/ROOM. The first frame is a welcome,
{"type": "welcome", "room", "epoch", "last_id", "gap", "entries": [{"id", "data"}]},
then every text message anyone sends to ROOM arrives as
{"type": "entry", "topic", "id", "data"} (ids 1, 2, 3... per room).
To resume, connect to /ROOM?since=N&epoch=E (the last id you saw, the
welcome's epoch): the welcome's entries are exactly what you missed, or, with
"gap": true, the recent ones. See docs/hub.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from functools import partial
from urllib.parse import parse_qs, urlsplit

import ripple
from ripple.hub import Backlog, Hub, HubUnavailable, make_backend

HISTORY = 20  # entries a newcomer (not resuming) gets


def welcome(room: str, backlog: Backlog) -> str:
    entries = [{"id": e.id, "data": e.data} for e in backlog.entries]
    head = dict(type="welcome", room=room, epoch=backlog.epoch, last_id=backlog.last_id)
    return json.dumps({**head, "gap": backlog.gap, "entries": entries})


async def main(port: int, redis: str | None) -> None:
    hub = Hub(make_backend(redis))  # redis None: the memory backend
    await hub.start()

    async def handler(ws: ripple.ServerConnection) -> None:
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        room = url.path.strip("/") or "lobby"
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            since = int(query["since"]) if "since" in query else None
        except ValueError:
            await ws.close(1008, "since must be an integer")
            return
        first = partial(welcome, room)  # the frame a subscriber gets before live entries
        try:
            await hub.subscribe(
                ws, room, since=since, epoch=query.get("epoch"), history=HISTORY, first=first
            )
        except HubUnavailable:
            await ws.close(1013, "hub unavailable, try again later")
            return
        try:
            async for message in ws:
                if isinstance(message, str):
                    try:
                        await hub.publish(room, message)
                    except HubUnavailable:
                        await ws.send(json.dumps({"type": "error", "error": "unavailable"}))
        finally:
            await hub.unsubscribe(ws, room)

    try:
        async with ripple.serve(handler, "127.0.0.1", port):
            print(f"hub_rooms started on ws://127.0.0.1:{port}/ ({hub.backend.name})")
            await asyncio.Future()
    finally:
        await hub.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--redis", metavar="URL", help="redis://host:port/db (default: memory)")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.redis))
