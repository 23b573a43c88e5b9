"""Helpers for tests/robustness: process figures (RSS, descriptors), the fd
limit, a black-holing TCP proxy, and where measured figures are reported.

Everything else (RawPeer, Servers, within, eventually...) comes from
tests/aio_helpers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
from collections.abc import AsyncIterator

import pytest

from aio_helpers import BOUND, free_port, within

#: Linux only: the figures come from /proc.
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RSS and descriptor counts read /proc (Linux)"
)


def rss_kib() -> int:
    """The process's resident set size now, in KiB (not the peak)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def fd_count() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def raise_fd_limit(needed: int) -> None:
    """Raise RLIMIT_NOFILE's soft limit to `needed`; fail (never skip) if the
    hard limit is lower: the test is about holding that many sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {needed}: raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def report(record_property: object, name: str, value: object) -> None:
    """Record a measured figure: in the JUnit XML (``record_property``) and on
    the terminal with ``pytest -s``. The figures are quoted in
    tests/robustness/README.md."""
    record_property(name, value)  # type: ignore[operator]
    print(f"\n[robustness] {name} = {value}")


class BlackHoleProxy:
    """A TCP proxy on 127.0.0.1 that forwards both ways until :meth:`black_hole`
    is called; from then on it keeps both sockets open and drops every byte.

    That is a peer that vanished without a FIN (a pulled cable, a NAT that
    forgot the mapping): TCP stays up, nothing comes back.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.forwarding = True
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def black_hole(self) -> None:
        self.forwarding = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await within(asyncio.open_connection("127.0.0.1", self.target_port))
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        # Bounded: each read either gets data or ends with EOF / aclose().
        while True:
            data = await src.read(65536)
            if not data:
                if self.forwarding:
                    dst.close()
                return
            if self.forwarding:
                dst.write(data)

    async def aclose(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await within(self.server.wait_closed(), BOUND)


def rss_kib_of(pid: int) -> int:
    """Another process's resident set size, in KiB."""
    with open(f"/proc/{pid}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


@contextlib.asynccontextmanager
async def echo_server_process(*args: str) -> AsyncIterator[tuple[int, int]]:
    """``ripple echo`` in a child process on a free port: (pid, port).

    Its memory is measured alone, without the test's own clients in it.
    """
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ripple",
        "echo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:  # bounded by the deadline
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if proc.returncode is not None or loop.time() > deadline:
                    raise AssertionError("ripple echo didn't start") from None
                await asyncio.sleep(0.05)
                continue
            writer.transport.abort()
            break
        yield proc.pid, port
    finally:
        if proc.returncode is None:
            proc.terminate()
        await within(proc.wait(), 20)
