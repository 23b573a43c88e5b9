#!/usr/bin/env python3
"""The load generator: one measurement of one server in one scenario.

It is the same for every server: one process on uvloop, pinned to CPU 1 (by
default), with raw asyncio Protocols. Every connection sends the same
pre-built handshake request; every message it sends is a frame masked once,
before the measurement starts. It doesn't parse what the server sends: it
compares every received byte (a C ``memcmp`` on slices) with the byte stream
the server must send (the expected frames, repeated) and counts whole frames,
so what it checks is exact and what it costs per message is a few Python
operations.

It starts the server itself (``bench/servers/<library>_server.py``, pinned to
CPU 0), measures, stops it and prints one JSON object on stdout. The server's
CPU time comes from ``/proc/PID/task/*/schedstat`` (nanoseconds on CPU), its
own from ``time.process_time()``. ``bench/run.py`` runs it for every target,
scenario and repeat.

    .venv/bin/python bench/loadgen.py --library ripple --loop asyncio --scenario echo --clients 64
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import idle_memory  # noqa: E402 (bench/ isn't a package)

HOST = "127.0.0.1"
LIBRARIES = ("ripple", "websockets", "aiohttp", "picows")
SCENARIOS = ("echo", "handshake", "broadcast", "idle")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = base64.b64encode(b"ripple-bench-key")  # any 16 bytes; servers don't care which
ACCEPT = base64.b64encode(hashlib.sha1(KEY + GUID).digest())
OP_TEXT, OP_BINARY, OP_CLOSE = 0x1, 0x2, 0x8
CHUNK = 2**18  # the largest read uvloop hands data_received (256 KiB)


# ---------------------------------------------------------------------------
# Frames and requests, built once
# ---------------------------------------------------------------------------


def handshake_request(path: str, port: int) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def frame(opcode: int, payload: bytes, mask: bytes | None) -> bytes:
    """One FIN frame; masked (client to server) when ``mask`` is given."""
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, bit | n)
    elif n < 2**16:
        head = struct.pack("!BBH", 0x80 | opcode, bit | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, bit | 127, n)
    if mask is None:
        return head + payload
    key = int.from_bytes(mask * (n // 4 + 1), "little") & ((1 << (8 * n)) - 1)
    return head + mask + (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def payload_of(size: int, binary: bool) -> bytes:
    if binary:
        return (bytes(range(256)) * (size // 256 + 1))[:size]
    return (b"ripple-bench:0123456789abcdefghijklmnopqrstuvwxyz" * (size // 40 + 1))[:size]


class Expected:
    """The bytes a server must send: ``frame_bytes`` repeated forever."""

    def __init__(self, frame_bytes: bytes) -> None:
        self.period = len(frame_bytes)
        self.stream = frame_bytes * ((self.period + CHUNK) // self.period + 1)
        self.limit = len(self.stream) - self.period  # any phase + this many bytes fit


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------


class Failure(Exception):
    pass


class Conn(asyncio.Protocol):
    """Sends the handshake, checks the 101, then checks and counts frames."""

    def __init__(self, request: bytes, expected: Expected) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.stream = expected.stream
        self.period = expected.period
        self.limit = expected.limit
        self.in_handshake = True
        self.head = b""
        self.phase = 0
        self.frames = 0
        self.transport: Any = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def fail(self, why: str) -> None:
        exc = Failure(why)
        for fut in (self.opened, self.lost):
            if not fut.done():
                fut.set_exception(exc)
        self.transport.abort()

    def handshake(self, data: bytes) -> bytes:
        head = self.head + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > 8192:
                self.fail("no end of the handshake response in 8 KiB")
            self.head = head
            return b""
        status = head[: head.find(b"\r\n")]
        if not status.startswith(b"HTTP/1.1 101"):
            self.fail(f"handshake refused: {status!r}")
            return b""
        if ACCEPT not in head[:end]:
            self.fail("bad Sec-WebSocket-Accept")
            return b""
        self.in_handshake = False
        self.head = b""
        self.opened.set_result(None)
        return head[end + 4 :]

    def data_received(self, data: bytes) -> None:
        if self.in_handshake:
            data = self.handshake(data)
            if not data:
                return
        phase = self.phase
        size = len(data)
        end = phase + size
        if end <= self.limit:
            # A slice compare is fastest for small chunks; startswith avoids
            # copying big ones.
            if (
                self.stream[phase:end] != data
                if size < 4096
                else not self.stream.startswith(data, phase)
            ):
                self.fail(f"unexpected bytes at frame {self.frames}, offset {phase}")
                return
        else:
            view = memoryview(data)
            at = 0
            while at < len(data):
                p = (phase + at) % self.period
                n = min(len(data) - at, self.limit - p)
                if self.stream[p : p + n] != view[at : at + n]:
                    self.fail(f"unexpected bytes at frame {self.frames}, offset {p}")
                    return
                at += n
        period = self.period
        self.phase = end % period
        if end >= period:
            self.received(end // period)

    def received(self, count: int) -> None:
        self.frames += count

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(Failure(f"connection lost during the handshake: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)


class Counter:
    """What connections report to the measurement."""

    def __init__(self) -> None:
        self.done = 0  # round trips, handshakes
        self.running = True
        self.target = 0  # broadcast: frames every subscriber must reach
        self.reached = 0
        self.needed = 0
        self.all_reached: asyncio.Future[None] | None = None


class EchoConn(Conn):
    """Keeps ``inflight`` messages in flight (one by default): each echo
    received sends the next."""

    def __init__(
        self,
        request: bytes,
        expected: Expected,
        message: bytes,
        counter: Counter,
        inflight: int = 1,
    ):
        super().__init__(request, expected)
        self.message = message
        self.counter = counter
        self.inflight = inflight
        self.sent = 0

    def start(self) -> None:
        self.sent += self.inflight
        self.transport.write(self.message * self.inflight)

    def received(self, count: int) -> None:
        self.frames += count
        counter = self.counter
        counter.done += count
        if counter.running:
            self.sent += count
            self.transport.write(self.message if count == 1 else self.message * count)


class SubscriberConn(Conn):
    def __init__(self, request: bytes, expected: Expected, counter: Counter):
        super().__init__(request, expected)
        self.counter = counter

    def received(self, count: int) -> None:
        frames = self.frames = self.frames + count
        counter = self.counter
        if frames >= counter.target > frames - count:
            counter.reached += 1
            if counter.reached == counter.needed and counter.all_reached is not None:
                counter.all_reached.set_result(None)


class HandshakeConn(Conn):
    """Opens, sends a close frame once open, waits for the server's close and
    its TCP close."""

    close_frame = frame(OP_CLOSE, struct.pack("!H", 1000), os.urandom(4))

    def data_received(self, data: bytes) -> None:
        if self.in_handshake:
            data = self.handshake(data)
            if self.in_handshake:
                return
            self.transport.write(self.close_frame)
        if data and self.frames == 0:
            if data[0] != 0x88:
                self.fail(f"expected a close frame, got {data[:16]!r}")
                return
            self.frames = 1


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (ns precision from schedstat)."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server(idle_memory.ServerProcess):
    """A server from bench/servers/, with idle_memory's line protocol."""

    def __init__(self, args: argparse.Namespace, scenario: str) -> None:
        super().__init__(args.library, False, False, 0)
        self.args = [
            sys.executable,
            str(HERE / "servers" / f"{args.library}_server.py"),
            "--scenario",
            scenario,
            "--loop",
            args.loop,
            "--port",
            "0",
            "--strategy",
            args.strategy,
        ]
        self.cpu = args.server_cpu
        if args.server_cpu >= 0:
            self.args += ["--cpu", str(args.server_cpu)]
        if args.profile_server:
            self.args += ["--profile", args.profile_server]
        self.env = dict(os.environ)
        self.env.pop("RIPPLE_NO_SPEEDUPS", None)
        if args.no_speedups:
            self.env["RIPPLE_NO_SPEEDUPS"] = "1"
        self.env.pop("RIPPLE_BENCH_CALLBACK", None)
        if args.callback:
            self.env["RIPPLE_BENCH_CALLBACK"] = "1"
        self.info: dict[str, str] = {}

    async def start(self, timeout: float) -> None:
        cpu = self.cpu
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=self.env,
            # On its CPU from the start: its startup mustn't compete with us.
            preexec_fn=None if cpu < 0 else lambda: os.sched_setaffinity(0, {cpu}),
        )
        words = (await self.line(timeout)).split()
        if words[0] != "port":
            raise RuntimeError(f"server said {words!r}")
        self.port = int(words[1])
        self.info = dict(w.split("=", 1) for w in words[2:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def active(self, timeout: float) -> int:
        words = (await self.ask("active", timeout)).split()
        return int(words[1])

    async def wait_for_active(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (active := await self.active(timeout)) != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"server has {active} active connections, expected {count}")
            await asyncio.sleep(0.02)

    async def stop(self, timeout: float = 10) -> None:
        """Close stdin (the server exits, writing its profile if any); kill if it won't."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        await self.kill()

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0)
            return self.stderr.read()[-2000:].decode(errors="replace")
        except (OSError, ValueError):
            return ""


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


@dataclass
class Snapshot:
    wall: float
    own_cpu: float
    server_cpu: float
    count: int

    @classmethod
    def take(cls, server: Server, count: int) -> Snapshot:
        return cls(time.perf_counter(), time.process_time(), cpu_seconds(server.pid), count)


def window(a: Snapshot, b: Snapshot) -> dict[str, float]:
    wall = b.wall - a.wall
    return {
        "wall_s": wall,
        "count": b.count - a.count,
        "server_cpu_s": b.server_cpu - a.server_cpu,
        "loadgen_cpu_s": b.own_cpu - a.own_cpu,
        "server_cpu_frac": (b.server_cpu - a.server_cpu) / wall,
        "loadgen_cpu_frac": (b.own_cpu - a.own_cpu) / wall,
    }


async def connect_all(factories: list[Any], port: int, batch: int, timeout: float) -> list[Conn]:
    """Open connections ``batch`` at a time; every one must complete its handshake."""
    loop = asyncio.get_running_loop()
    conns: list[Conn] = []

    async def one(factory: Any) -> None:
        conn = factory()
        conns.append(conn)
        await loop.create_connection(lambda: conn, HOST, port)
        await conn.opened

    for start in range(0, len(factories), batch):
        await asyncio.wait_for(
            asyncio.gather(*(one(f) for f in factories[start : start + batch])), timeout
        )
    return conns


def close_all(conns: list[Conn]) -> None:
    for conn in conns:
        if conn.transport is not None:
            conn.transport.abort()


async def measure_echo(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    binary = args.binary
    payload = payload_of(args.size, binary)
    opcode = OP_BINARY if binary else OP_TEXT
    message = frame(opcode, payload, os.urandom(4))
    expected = Expected(frame(opcode, payload, None))
    counter = Counter()
    request = handshake_request("/echo", server.port)
    conns = await connect_all(
        [lambda: EchoConn(request, expected, message, counter, args.inflight)] * args.clients,
        server.port,
        500,
        args.timeout,
    )
    try:
        for conn in conns:
            conn.start()  # type: ignore[attr-defined]
        await asyncio.sleep(args.warmup)
        a = Snapshot.take(server, counter.done)
        while (
            time.perf_counter() - a.wall < args.duration
            and counter.done - a.count < args.max_count
        ):
            await asyncio.sleep(0.02)
            for conn in conns:
                if conn.lost.done():
                    conn.lost.result()  # raises the Failure, if any
                    raise Failure("the server closed a connection")
        b = Snapshot.take(server, counter.done)
        counter.running = False
        deadline = time.monotonic() + args.timeout
        while any(c.frames < c.sent for c in conns):  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise Failure("echoes missing after the measurement")
            await asyncio.sleep(0.01)
    finally:
        close_all(conns)
    result = window(a, b)
    result["per_s"] = result["count"] / result["wall_s"]
    result["mib_per_s"] = result["per_s"] * args.size / 2**20
    return result


async def measure_handshake(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    counter = Counter()
    request = handshake_request("/echo", server.port)
    expected = Expected(b"\x00")  # unused: HandshakeConn checks the close itself

    async def worker() -> None:
        while counter.running:
            conn = HandshakeConn(request, expected)
            await loop.create_connection(lambda c=conn: c, HOST, server.port)
            await asyncio.wait_for(conn.lost, args.timeout)
            if conn.frames != 1:
                raise Failure("the server closed without a close frame")
            counter.done += 1

    workers = [asyncio.ensure_future(worker()) for _ in range(args.concurrency)]
    try:
        await asyncio.sleep(args.warmup)
        a = Snapshot.take(server, counter.done)
        while (
            time.perf_counter() - a.wall < args.duration
            and counter.done - a.count < args.max_count
        ):
            await asyncio.sleep(0.02)
            for w in workers:
                if w.done():
                    w.result()
        b = Snapshot.take(server, counter.done)
        counter.running = False
        await asyncio.wait_for(asyncio.gather(*workers), args.timeout)
    finally:
        for w in workers:
            w.cancel()
    result = window(a, b)
    result["per_s"] = result["count"] / result["wall_s"]
    return result


async def measure_broadcast(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    n, k, warm = args.clients, args.messages, 2
    payload = payload_of(args.size, False)
    message = frame(OP_TEXT, payload, os.urandom(4))
    expected = Expected(frame(OP_TEXT, payload, None))
    counter = Counter()
    counter.needed = n
    sub_request = handshake_request("/sub", server.port)
    conns = await connect_all(
        [lambda: SubscriberConn(sub_request, expected, counter)] * n,
        server.port,
        500,
        args.timeout,
    )
    loop = asyncio.get_running_loop()
    try:
        await server.wait_for_active(n, args.timeout)
        pub_conns = await connect_all(
            [lambda: Conn(handshake_request("/pub", server.port), Expected(b"\x00"))],
            server.port,
            1,
            args.timeout,
        )
        conns += pub_conns
        pub = pub_conns[0].transport

        async def publish(count: int) -> tuple[Snapshot, Snapshot]:
            counter.target += count
            counter.reached = 0
            counter.all_reached = loop.create_future()
            a = Snapshot.take(server, 0)
            pub.write(message * count)
            await asyncio.wait_for(counter.all_reached, args.timeout)
            return a, Snapshot.take(server, n * count)

        await publish(warm)  # first-use costs out of the measurement
        a, b = await publish(k)
    finally:
        close_all(conns)
    result = window(a, b)
    result["deliveries"] = n * k
    result["time_ms"] = result["wall_s"] * 1000
    result["per_s"] = n * k / result["wall_s"]
    result["per_cpu_s"] = n * k / result["server_cpu_s"] if result["server_cpu_s"] > 0 else None
    return result


async def measure_idle(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """idle_memory.py's measurement, against this server."""
    writers: list[asyncio.StreamWriter] = []
    stats = idle_memory.Stats()
    warmup, n = 20, args.clients
    try:
        await idle_memory.open_many(
            server.port, warmup, False, False, 100, args.timeout, writers, stats
        )
        await server.wait_active(warmup, args.timeout)
        idle_memory.close_all(writers)
        await server.wait_active(0, args.timeout)
        await asyncio.sleep(args.settle)
        baseline, _ = await server.rss(args.timeout)
        a = Snapshot.take(server, 0)
        await idle_memory.open_many(
            server.port, n, False, False, 250, args.timeout, writers, stats, offset=warmup
        )
        await server.wait_active(n, args.timeout)
        b = Snapshot.take(server, n)
        await asyncio.sleep(args.settle)
        after, active = await server.rss(args.timeout)
    finally:
        idle_memory.close_all(writers)
    if active != n:
        raise Failure(f"{active} handlers at the end, expected {n}")
    result = window(a, b)  # the opening of n connections: handshakes/s as a side note
    result.update(
        baseline_kib=baseline,
        after_kib=after,
        kib_per_conn=(after - baseline) / n,
        per_s=n / result["wall_s"],
    )
    return result


MEASURES = {
    "echo": measure_echo,
    "handshake": measure_handshake,
    "broadcast": measure_broadcast,
    "idle": measure_idle,
}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = Server(args, "echo" if args.scenario == "handshake" else args.scenario)
    t0 = time.monotonic()
    try:
        await server.start(args.timeout)
        result = await MEASURES[args.scenario](server, args)
        result["server"] = server.info
    except BaseException:
        print(f"server stderr: {server.stderr_tail()}", file=sys.stderr)
        raise
    finally:
        await server.stop()
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", choices=LIBRARIES, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--no-speedups", action="store_true", help="RIPPLE_NO_SPEEDUPS=1")
    parser.add_argument(
        "--callback", action="store_true", help="ripple: echo with on_message(), not async for"
    )
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--strategy", default="broadcast", help="broadcast: publish strategy")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--size", type=int, default=32, help="payload bytes")
    parser.add_argument("--binary", action="store_true")
    parser.add_argument(
        "--inflight", type=int, default=1, help="echo: messages each client keeps in flight"
    )
    parser.add_argument("--messages", type=int, default=50, help="broadcast: K")
    parser.add_argument("--concurrency", type=int, default=16, help="handshake workers")
    parser.add_argument("--warmup", type=float, default=0.2, help="seconds")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds measured")
    parser.add_argument("--max-count", type=int, default=10**7, help="stop after this many")
    parser.add_argument("--settle", type=float, default=0.3, help="idle: seconds before RSS")
    parser.add_argument("--timeout", type=float, default=30, help="seconds for any wait")
    parser.add_argument("--max-seconds", type=float, default=120, help="for the whole run")
    parser.add_argument("--cpu", type=int, default=1, help="pin the load generator here")
    parser.add_argument("--server-cpu", type=int, default=0, help="pin the server here")
    parser.add_argument("--profile-server", default=None, help="server cProfile output")
    parser.add_argument("--profile-self", default=None, help="load generator cProfile output")
    return parser.parse_args(argv)


def measure(argv: list[str] | None = None) -> dict[str, Any]:
    """One measurement (a fresh server, a fresh uvloop loop in this process);
    ``{"error": ...}`` when it failed. bench/run.py calls this in its own
    process, pinned like this script."""
    args = parse_args(argv)
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    idle_memory.raise_nofile(args.clients + 1024)
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    profiler = None
    if args.profile_self:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        return loop.run_until_complete(asyncio.wait_for(run(args), args.max_seconds))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile_self)
        loop.close()
        asyncio.set_event_loop(None)


def main(argv: list[str] | None = None) -> int:
    result = measure(argv)
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
