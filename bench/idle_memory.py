#!/usr/bin/env python3
"""Server memory per idle WebSocket connection: ripple and websockets, with
permessage-deflate off and on, measured in one run.

Each measurement starts a fresh server in its own subprocess (this file run
with ``--serve``): a handler that only waits for the connection to close
(or, in the "after one message" variants, echoes the first message and then
waits), on 127.0.0.1 with an OS-chosen port and keepalive pings off. This
process is the load generator: a minimal hand-written client that sends the
same browser-like opening handshake to both servers (offering
``permessage-deflate; client_max_window_bits`` when compression is on). It
opens and closes a few warm-up connections, asks the server for its RSS
(VmRSS from /proc/self/status, after gc.collect()), opens N connections in
bounded batches, waits until the server runs N handlers, asks again, and
divides the difference by N. Every variant is repeated (interleaved) and the
median reported.

    .venv/bin/python bench/idle_memory.py                  # N=2000, 3 repeats
    .venv/bin/python bench/idle_memory.py --connections 500 --repeats 1
    .venv/bin/python bench/idle_memory.py --trace --libraries ripple
        # tracemalloc in the server: top allocations per connection

Loopback only; every phase has a timeout, and the server is killed at the end
of each measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HOST = "127.0.0.1"
LIBRARIES = ("ripple", "websockets")
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    compression: bool
    message: bool  # exchange one message before going idle


VARIANTS = (
    Variant("off", "off", False, False),
    Variant("off-1msg", "off (after one message)", False, True),
    Variant("on", "on (never used)", True, False),
    Variant("on-1msg", "on (after one message)", True, True),
)

# A chat-like text message, sent once per connection in the "1msg" variants.
MESSAGE = (
    '{"type":"message","room":"lobby","user":"user-%05d","text":'
    '"hello everyone, this is a short chat message sent once on this connection"}'
)


# ---------------------------------------------------------------------------
# The server subprocess
# ---------------------------------------------------------------------------


def vm_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])  # kB in /proc means KiB
    raise RuntimeError("no VmRSS in /proc/self/status")


def out(line: str) -> None:
    """One line of the control protocol on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve_stdin(command: Callable[[list[str]], None]) -> asyncio.Future[None]:
    """The servers' control channel (this script's and bench/servers/'s): call
    ``command(words)`` for each non-empty line read from stdin, on the running
    loop; the future returned completes when stdin closes."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    buf = bytearray()

    def readable() -> None:
        data = os.read(0, 4096)
        if not data:
            loop.remove_reader(0)
            if not stop.done():
                stop.set_result(None)
            return
        buf.extend(data)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            if line.strip():
                command(line.decode().split())

    loop.add_reader(0, readable)
    return stop


def serve_main(library: str, compression: bool, echo: bool, trace: int) -> None:
    if trace:
        import tracemalloc

        tracemalloc.start(trace)

    if library == "ripple":
        import ripple

        serve: Any = ripple.serve
    elif library == "websockets":
        from websockets.asyncio.server import serve
    else:
        raise SystemExit(f"unknown library {library!r}")

    active = 0

    async def handler(ws: Any) -> None:
        nonlocal active
        active += 1
        try:
            if echo:
                try:
                    await ws.send(await ws.recv())
                except Exception:  # ConnectionClosed of either library
                    return
            await ws.wait_closed()
        finally:
            active -= 1

    async def main() -> None:
        snapshot: Any = None

        def command(cmd: list[str]) -> None:
            nonlocal snapshot
            if cmd[0] == "rss":
                gc.collect()
                out(f"rss {vm_rss_kib()} {active}")
            elif cmd[0] == "snap":
                import tracemalloc

                gc.collect()
                snapshot = tracemalloc.take_snapshot()
                out("ok")
            elif cmd[0] == "top":
                import tracemalloc

                gc.collect()
                n, limit, key = int(cmd[1]), int(cmd[2]), cmd[3]
                now = tracemalloc.take_snapshot()
                filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
                diff = now.filter_traces(filters).compare_to(snapshot.filter_traces(filters), key)
                total = sum(d.size_diff for d in diff)
                out(f"total {total / n / 1024:.2f} KiB per connection (Python + zlib heap)")
                for d in diff[:limit]:
                    where = d.traceback.format(limit=-trace if key == "traceback" else 1)
                    out(
                        f"{d.size_diff / n / 1024:8.2f} KiB {d.count_diff / n:6.2f} blocks  "
                        + " <- ".join(s.strip() for s in reversed(where) if s.strip())
                    )
                out("end")

        kwargs: dict[str, Any] = {
            "ping_interval": None,
            "compression": "deflate" if compression else None,
            "backlog": 512,
        }
        async with serve(handler, HOST, 0, **kwargs) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            stop = serve_stdin(command)
            out(f"port {port}")
            await stop

    asyncio.run(main())


# ---------------------------------------------------------------------------
# The load generator: a minimal raw client
# ---------------------------------------------------------------------------


def handshake_request(port: int, key: str, compression: bool) -> bytes:
    # What a browser sends, so both servers parse and keep the same headers.
    lines = [
        "GET /chat HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Connection: Upgrade",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Upgrade: websocket",
        f"Origin: http://{HOST}:{port}",
        "Sec-WebSocket-Version: 13",
        "Accept-Encoding: gzip, deflate, br, zstd",
        "Accept-Language: en-US,en;q=0.9",
        f"Sec-WebSocket-Key: {key}",
    ]
    if compression:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def masked_frame(payload: bytes, rsv1: bool) -> bytes:
    b0 = 0x80 | (0x40 if rsv1 else 0) | 0x1  # FIN, text
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + body


@dataclass
class Stats:
    deflate_accepted: int = 0
    echo_compressed: int = 0
    window_bits: set[str] = field(default_factory=set)


async def open_client(
    port: int,
    compression: bool,
    message: bytes | None,
    writers: list[asyncio.StreamWriter],
    stats: Stats,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    writers.append(writer)  # closed by the caller, whatever happens
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(handshake_request(port, key, compression))
    head = await reader.readuntil(b"\r\n\r\n")
    status, *header_lines = head.decode("latin-1").split("\r\n")
    if status.split()[1] != "101":
        raise RuntimeError(f"handshake refused: {status}")
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    if headers.get("sec-websocket-accept") != accept:
        raise RuntimeError("bad Sec-WebSocket-Accept")
    extensions = headers.get("sec-websocket-extensions", "")
    deflate = extensions.startswith("permessage-deflate")
    if deflate != compression:
        raise RuntimeError(f"compression={compression} but the server answered {extensions!r}")
    client_bits = 15
    if deflate:
        stats.deflate_accepted += 1
        stats.window_bits.add(extensions)
        for param in extensions.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name == "client_max_window_bits" and value:
                client_bits = int(value)
    if message is None:
        return
    payload = message
    if deflate:
        # Our own compressor, within the window the server allowed us.
        compressor = zlib.compressobj(6, zlib.DEFLATED, -max(client_bits, 9))
        payload = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        payload = payload[:-4] if payload.endswith(TAIL) else payload
    writer.write(masked_frame(payload, rsv1=deflate))
    # The echo: one unmasked text frame.
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    data = await reader.readexactly(n)
    if b0 & 0x0F != 0x1:
        raise RuntimeError(f"expected the echo, got opcode {b0 & 0x0F}")
    if b0 & 0x40:
        stats.echo_compressed += 1
        data = zlib.decompressobj(-15).decompress(data + TAIL)
    if data != message:
        raise RuntimeError("the echo differs from the message")


class ServerProcess:
    """The server subprocess and its line protocol on stdin/stdout."""

    def __init__(self, library: str, compression: bool, echo: bool, trace: int) -> None:
        self.args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            library,
            "on" if compression else "off",
            "echo" if echo else "idle",
            str(trace),
        ]
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by kill())
        self.port = 0

    async def start(self, timeout: float) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        words = (await self.line(timeout)).split()
        if words[0] != "port":
            raise RuntimeError(f"server said {words!r}")
        self.port = int(words[1])

    async def line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            self.stderr.seek(0)
            tail = self.stderr.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"server exited: {tail}")
        return raw.decode().strip()

    async def ask(self, command: str, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.line(timeout)

    async def rss(self, timeout: float) -> tuple[int, int]:
        """(VmRSS in KiB, number of handlers running)."""
        _, rss, active = (await self.ask("rss", timeout)).split()
        return int(rss), int(active)

    async def wait_active(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            rss, active = await self.rss(timeout)
            if active == count:
                return rss
            if time.monotonic() > deadline:
                raise RuntimeError(f"server runs {active} handlers, expected {count}")
            await asyncio.sleep(0.1)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)
        self.stderr.close()


async def open_many(
    port: int,
    count: int,
    compression: bool,
    message: bool,
    batch: int,
    timeout: float,
    writers: list[asyncio.StreamWriter],
    stats: Stats,
    offset: int = 0,
) -> None:
    for start in range(0, count, batch):
        size = min(batch, count - start)
        coros = [
            open_client(
                port,
                compression,
                (MESSAGE % (offset + start + i)).encode() if message else None,
                writers,
                stats,
            )
            for i in range(size)
        ]
        await asyncio.wait_for(asyncio.gather(*coros), timeout)


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()
    writers.clear()


async def measure(library: str, variant: Variant, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement with a fresh server; returns KiB per connection and details."""
    server = ServerProcess(library, variant.compression, variant.message, args.trace_frames)
    writers: list[asyncio.StreamWriter] = []
    stats = Stats()
    t0 = time.monotonic()
    try:
        await server.start(args.timeout)
        # Warm-up: first-use imports and caches shouldn't count per connection.
        await open_many(
            server.port,
            args.warmup,
            variant.compression,
            variant.message,
            args.batch,
            args.timeout,
            writers,
            stats,
        )
        await server.wait_active(args.warmup, args.timeout)
        close_all(writers)
        await server.wait_active(0, args.timeout)
        await asyncio.sleep(args.settle)
        baseline, _ = await server.rss(args.timeout)
        if args.trace:
            await server.ask("snap", args.timeout)
        stats = Stats()
        await open_many(
            server.port,
            args.connections,
            variant.compression,
            variant.message,
            args.batch,
            args.timeout,
            writers,
            stats,
            offset=args.warmup,
        )
        await server.wait_active(args.connections, args.timeout)
        await asyncio.sleep(args.settle)
        after, active = await server.rss(args.timeout)
        top: list[str] = []
        if args.trace:
            line = await server.ask(
                f"top {args.connections} {args.trace_top} {args.trace_key}", args.timeout
            )
            while line != "end":
                top.append(line)
                line = await server.line(args.timeout)
    finally:
        await server.kill()
        close_all(writers)
    if active != args.connections:
        raise RuntimeError(f"{active} handlers at the end, expected {args.connections}")
    return {
        "library": library,
        "variant": variant.key,
        "baseline_kib": baseline,
        "after_kib": after,
        "kib_per_connection": (after - baseline) / args.connections,
        "deflate_accepted": stats.deflate_accepted,
        "echo_compressed": stats.echo_compressed,
        "negotiated": sorted(stats.window_bits),
        "seconds": round(time.monotonic() - t0, 2),
        "tracemalloc_top": top,
    }


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_total = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) // 1024
                break

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    commit = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    # The code measured, whatever git says about it (the tree may be dirty).
    digest = hashlib.sha256()
    for path in sorted((HERE.parent / "src" / "ripple").rglob("*.py")):
        digest.update(path.read_bytes())
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_mib": mem_total,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "ripple": ver("ripple"),
        "websockets": ver("websockets"),
        "ripple_commit": commit,
        "ripple_src_sha256": digest.hexdigest()[:12],
    }


def summarize(runs: list[dict[str, Any]], libraries: list[str]) -> list[dict[str, Any]]:
    rows = []
    for library in libraries:
        for variant in VARIANTS:
            values = [
                r["kib_per_connection"]
                for r in runs
                if r["library"] == library and r["variant"] == variant.key
            ]
            if values:
                rows.append(
                    {
                        "library": library,
                        "variant": variant.key,
                        "compression": variant.label,
                        "median_kib": statistics.median(values),
                        "runs_kib": values,
                    }
                )
    return rows


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"| library | compression | KiB per connection (median of {args.repeats}) | runs |",
        "| --- | --- | ---: | --- |",
    ]
    for row in rows:
        runs = ", ".join(f"{v:.1f}" for v in row["runs_kib"])
        lines.append(
            f"| {row['library']} | {row['compression']} | {row['median_kib']:.1f} | {runs} |"
        )
    lines += [
        "",
        f"Server RSS growth / N for N={args.connections} idle connections on loopback "
        f"(VmRSS after gc.collect(), fresh server process per run, {args.warmup} warm-up "
        "connections before the baseline, keepalive pings off, default options otherwise). "
        f"{info['cpu']}, {info['cpus']} CPUs, {info['os']}, {info['python']}, "
        f"zlib {info['zlib']}, ripple {info['ripple']} (git {info['ripple_commit']}, "
        f"src sha256 {info['ripple_src_sha256']}), "
        f"websockets {info['websockets']}.",
    ]
    return "\n".join(lines) + "\n"


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        if limit < needed:
            raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {needed}: use fewer connections")


async def bench(args: argparse.Namespace) -> None:
    libraries = args.libraries
    variants = [v for v in VARIANTS if v.key in args.variants]
    runs: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.max_seconds
    for rep in range(args.repeats):
        for library in libraries:
            for variant in variants:
                if time.monotonic() > deadline:
                    raise SystemExit(f"--max-seconds {args.max_seconds} exceeded")
                result = await measure(library, variant, args)
                result["repeat"] = rep
                runs.append(result)
                print(
                    f"[{rep + 1}/{args.repeats}] {library:10} {variant.label:24} "
                    f"{result['kib_per_connection']:7.2f} KiB/conn  "
                    f"(RSS {result['baseline_kib']} -> {result['after_kib']} KiB, "
                    f"{result['seconds']} s)",
                    file=sys.stderr,
                )
                for line in result["tracemalloc_top"]:
                    print("    " + line, file=sys.stderr)
    info = machine_info()
    rows = summarize(runs, libraries)
    table = markdown(rows, info, args)
    print(table)
    if args.trace:
        return  # tracemalloc inflates RSS: don't overwrite the results
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "idle_memory.md").write_text(
        f"# Idle connection memory\n\n`{' '.join(['bench/idle_memory.py', *sys.argv[1:]])}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n" + table
    )
    (RESULTS / "idle_memory.json").write_text(
        json.dumps(
            {
                "machine": info,
                "parameters": {
                    k: getattr(args, k)
                    for k in ("connections", "repeats", "warmup", "batch", "settle")
                },
                "rows": rows,
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}/idle_memory.md and idle_memory.json", file=sys.stderr)


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--serve":
        _, _, library, compression, mode, trace = sys.argv
        serve_main(library, compression == "on", mode == "echo", int(trace))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", "-n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --trace)")
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[v.key for v in VARIANTS],
        default=[v.key for v in VARIANTS],
    )
    parser.add_argument("--batch", type=int, default=100, help="connections opened at once")
    parser.add_argument("--warmup", type=int, default=20, help="connections before the baseline")
    parser.add_argument("--settle", type=float, default=0.5, help="seconds before reading RSS")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per phase")
    parser.add_argument("--max-seconds", type=float, default=1800, help="for the whole run")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run tracemalloc in the server and print the top allocations per connection "
        "(results aren't written: tracemalloc inflates RSS)",
    )
    parser.add_argument("--trace-top", type=int, default=15)
    parser.add_argument(
        "--trace-key", choices=("lineno", "filename", "traceback"), default="lineno"
    )
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.trace else 3
    if args.connections < 1 or args.repeats < 1 or args.batch < 1:
        parser.error("--connections, --repeats and --batch must be positive")
    args.trace_frames = (8 if args.trace_key == "traceback" else 1) if args.trace else 0
    raise_nofile(args.connections + args.warmup + 256)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
