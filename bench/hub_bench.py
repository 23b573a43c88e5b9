#!/usr/bin/env python3
"""The hub's cost: chat deliveries per second, memory against Redis, 1 and 2 workers.

One run, three setups of ``ripple chat`` (each a fresh process tree, on a
free loopback port, ``--rate 0``):

1. ``memory``: the default hub, one process;
2. ``redis, 1 worker``: ``--redis URL``;
3. ``redis, 2 workers``: ``--redis URL --workers 2`` (SO_REUSEPORT spreads the
   clients over both).

For each: C clients join, P of them publish K messages in all, as fast as the
chat takes them; the time runs from the first send until every client has
every message, and deliveries per second are C x K / that time (median of
the repeats). A redis-server is started on a free port for the run (or pass
``--redis URL``). The load generator runs in this process, so with 2 workers
it can be what limits the rate: read the ratios, not only the numbers.

    .venv/bin/python bench/hub_bench.py            # C=200, K=500, 3 repeats
    .venv/bin/python bench/hub_bench.py --quick    # C=50, K=100, 1 repeat
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import ripple  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_redis() -> tuple[asyncio.subprocess.Process, str]:
    path = shutil.which("redis-server")
    if path is None:
        raise SystemExit("hub_bench: redis-server isn't installed (apt-get install redis-server)")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        path, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit("hub_bench: redis-server didn't start")


async def start_chat(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ripple", "chat", "--host", "127.0.0.1", "--port", "0",
        "--rate", "0", "--max-backlog", str(2**26), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    if not line:
        raise SystemExit(f"hub_bench: ripple chat {' '.join(args)} didn't start")
    page = line.split()[3]
    return proc, page.replace("http://", "ws://") + "ws"


async def measure(url: str, clients: int, publishers: int, messages: int) -> float:
    """Deliveries per second: ``clients`` x ``messages`` over the time it took."""
    conns = []
    for i in range(clients):
        ws = await ripple.connect(url, max_queue=None)
        await ws.send(json.dumps({"type": "join", "name": f"c{i}"}))
        conns.append(ws)
    # Everyone welcomed, then one message everyone sees: every client is
    # subscribed (joins are handled concurrently, so the last join isn't a
    # sign), and only the measured messages follow.
    for ws in conns:
        while json.loads(await ws.recv()).get("type") != "welcome":
            pass
    await conns[0].send(json.dumps({"type": "message", "text": "ready"}))
    for ws in conns:
        while json.loads(await ws.recv()).get("text") != "ready":
            pass

    counts = [0] * clients
    errors: list[dict[str, object]] = []

    async def drain(index: int, ws: ripple.ClientConnection) -> None:
        while counts[index] < messages:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "message":
                counts[index] += 1
            elif msg.get("type") == "error":
                errors.append(msg)

    async def publish(ws: ripple.ClientConnection, count: int) -> None:
        for i in range(count):
            await ws.send(json.dumps({"type": "message", "text": f"m{i}"}))

    share = [messages // publishers + (i < messages % publishers) for i in range(publishers)]
    start = time.perf_counter()
    readers = [asyncio.ensure_future(drain(i, ws)) for i, ws in enumerate(conns)]
    await asyncio.gather(*(publish(conns[i], n) for i, n in enumerate(share)))
    try:
        await asyncio.wait_for(asyncio.gather(*readers), 120)
    except asyncio.TimeoutError:
        raise SystemExit(
            f"hub_bench: not every client got {messages} messages in 120 s: "
            f"min {min(counts)}, max {max(counts)}; errors: {errors[:3]}"
        ) from None
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return clients * messages / elapsed


async def main_async(args: argparse.Namespace) -> int:
    redis_proc = None
    url = args.redis
    if url is None:
        redis_proc, url = await start_redis()
    setups = [
        ("memory, 1 worker", ()),
        ("redis, 1 worker", ("--redis", url)),
        ("redis, 2 workers", ("--redis", url, "--workers", "2")),
    ]
    results: dict[str, float] = {}
    try:
        for label, flags in setups:
            runs = []
            for _ in range(args.repeat):
                proc, ws_url = await start_chat(*flags)
                try:
                    runs.append(
                        await measure(ws_url, args.clients, args.publishers, args.messages)
                    )
                finally:
                    proc.terminate()
                    await proc.wait()
            results[label] = statistics.median(runs)
            print(f"{label:>18}: {results[label]:>12,.0f} deliveries/s", flush=True)
    finally:
        if redis_proc is not None:
            redis_proc.kill()
            await redis_proc.wait()
    base = results["memory, 1 worker"]
    lines = [
        "# The hub's cost: `bench/hub_bench.py`",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"median of {args.repeat}; C={args.clients} clients, K={args.messages} messages, "
        f"{args.publishers} publishers. The load generator shares the machine.",
        "",
        "| setup | deliveries/s | vs memory |",
        "| --- | ---: | ---: |",
        *(f"| {label} | {rate:,.0f} | {rate / base:.2f}x |" for label, rate in results.items()),
    ]
    print()
    print("\n".join(lines[2:]))
    if args.output is not None:
        args.output.write_text("\n".join(lines) + "\n")
        args.output.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis", metavar="URL", help="use this Redis instead of starting one")
    parser.add_argument("--quick", action="store_true", help="C=50, K=100, 1 repeat")
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench" / "results" / "hub.md",
        help="where the table goes (and a .json beside it)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.messages, args.repeat = 50, 100, 1
        args.output = None  # a quick look doesn't replace the recorded results
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
