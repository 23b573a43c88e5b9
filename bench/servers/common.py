"""What every benchmark server shares: arguments, CPU pinning, the event loop,
the control channel on stdin/stdout, and the broadcast bookkeeping.

A server is started by ``bench/loadgen.py`` as::

    python bench/servers/<library>_server.py --scenario echo --loop uvloop --port 0 --cpu 0

and speaks the line protocol of ``bench/idle_memory.py``'s servers: it prints
``port N`` (followed by ``key=value`` words describing itself) once listening,
then answers ``rss`` with ``rss <VmRSS KiB> <active>`` (after ``gc.collect()``)
and ``active`` with ``active <active>``, where *active* counts the handlers
running (``echo``, ``idle``) or the subscribers (``broadcast``). It exits when
its stdin closes.

Scenarios:

``echo``
    Echo every message: text as text (the library hands the handler a str),
    binary as binary. Also used for the handshake benchmark.
``idle``
    Accept and wait for the close; nothing else (the RSS benchmark).
``broadcast``
    Connections to ``/pub`` publish: every message they send goes to every
    connection of the other paths (the subscribers), with ``--strategy``:
    ``await`` (``await ws.send(m)`` in a loop), ``gather``
    (``asyncio.gather`` of the sends), ``task`` (one ``asyncio.create_task``
    per send, not awaited) or ``broadcast`` (the library's own fan-out).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/: idle_memory

from idle_memory import out, serve_stdin, vm_rss_kib  # the one control channel

SCENARIOS = ("echo", "idle", "broadcast")
STRATEGIES = ("await", "gather", "task", "broadcast")
LOOPS = ("asyncio", "uvloop")
HOST = "127.0.0.1"
#: Incoming message limit for every server: above the 1 MiB echo.
MAX_SIZE = 4 * 2**20


def parse_args(library: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"{library} benchmark server")
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--strategy", choices=STRATEGIES, default="broadcast")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    parser.add_argument("--profile", default=None, help="write cProfile stats here at exit")
    args = parser.parse_args()
    args.library = library
    return args


__all__ = ["Control", "Fanout", "out", "parse_args", "run", "vm_rss_kib"]


class Control:
    """The stdin/stdout channel and the counters it reports."""

    def __init__(self) -> None:
        self.active = 0

    async def run(self, port: int, **info: Any) -> None:
        """Announce ``port``, answer commands until stdin closes."""

        def command(cmd: list[str]) -> None:
            if cmd[0] == "rss":
                gc.collect()
                out(f"rss {vm_rss_kib()} {self.active}")
            elif cmd[0] == "active":
                out(f"active {self.active}")
            else:
                out(f"error unknown command {cmd[0]!r}")

        stop = serve_stdin(command)
        words = " ".join(f"{k}={v}" for k, v in info.items())
        out(f"port {port} {words}".rstrip())
        await stop


def run(args: argparse.Namespace, main: Callable[[], Awaitable[None]]) -> None:
    """Pin the process, pick the loop, run ``main()`` (under cProfile if asked)."""
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    profiler = cProfile.Profile() if args.profile else None
    try:
        if profiler is not None:
            profiler.enable()
        loop.run_until_complete(main())
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        loop.close()


class Fanout:
    """The subscribers of the ``broadcast`` scenario and the publish strategies
    for libraries whose send is a coroutine (ripple, websockets, aiohttp).

    ``send(conn, message)`` returns the library's send coroutine;
    ``library_broadcast(conns, message)`` is the library's fan-out.
    """

    def __init__(
        self,
        control: Control,
        strategy: str,
        send: Callable[[Any, str], Awaitable[None]],
        library_broadcast: Callable[[set[Any], str], Any],
    ) -> None:
        self.control = control
        self.subscribers: set[Any] = set()
        self.send = send
        self.library_broadcast = library_broadcast
        self.tasks: set[asyncio.Task[None]] = set()
        self.publish: Callable[[str], Awaitable[None]] = getattr(self, "_" + strategy)

    def add(self, conn: Any) -> None:
        self.subscribers.add(conn)
        self.control.active = len(self.subscribers)

    def discard(self, conn: Any) -> None:
        self.subscribers.discard(conn)
        self.control.active = len(self.subscribers)

    async def _await(self, message: str) -> None:
        send = self.send
        for conn in list(self.subscribers):
            try:
                await send(conn, message)
            except Exception:  # closed meanwhile: the next one
                pass

    async def _gather(self, message: str) -> None:
        send = self.send
        await asyncio.gather(
            *[send(conn, message) for conn in self.subscribers], return_exceptions=True
        )

    async def _task(self, message: str) -> None:
        send = self.send
        tasks = self.tasks
        create_task = asyncio.get_running_loop().create_task
        for conn in self.subscribers:
            task = create_task(send(conn, message))  # type: ignore[arg-type]
            tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a closed connection isn't news

    async def _broadcast(self, message: str) -> None:
        self.library_broadcast(self.subscribers, message)
