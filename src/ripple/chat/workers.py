"""``ripple chat --redis URL --workers N``: N processes on one port.

The parent picks the port (binding it with SO_REUSEPORT, so port 0 works),
starts N ``ripple chat`` processes that bind it with SO_REUSEPORT too (the
kernel spreads new connections over them), prints where the chat is, and
restarts a worker that dies. The workers share the room through Redis. On
SIGINT or SIGTERM it stops them all (each closes its clients with 1001).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Sequence

from .._stop import stop_on_signals

__all__ = ["run_workers"]

logger = logging.getLogger("ripple.chat.workers")

#: Seconds before a worker that died is started again.
RESTART_DELAY = 1.0


def _reserve(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class _Worker:
    def __init__(self, index: int, argv: list[str]) -> None:
        self.index = index
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self.line = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ripple", *self.argv, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(f"worker {self.index} exited with {code} before serving")
        self.line = line.decode().rstrip("\n")
        logger.info("worker %d (pid %d) serving", self.index, self.proc.pid)


async def run_workers(argv: Sequence[str], host: str, port: int, workers: int) -> int:
    """Run ``workers`` chat processes on ``host:port`` until SIGINT or SIGTERM.

    Args:
        argv: the ``ripple`` command line (``chat`` and its flags); each
            worker gets it with ``--workers 1``, the port and ``--reuse-port``.
    """
    reserved = _reserve(host, port)
    port = reserved.getsockname()[1]
    child = [*argv, "--port", str(port), "--workers", "1", "--reuse-port"]
    pool = [_Worker(i, child) for i in range(workers)]
    loop = asyncio.get_running_loop()
    stop, restore_signals = stop_on_signals(loop)
    watchers: list[asyncio.Task[None]] = []
    try:
        try:
            await asyncio.gather(*(w.start() for w in pool))
        except RuntimeError as exc:
            print(f"ripple chat: {exc}", file=sys.stderr)
            return 1
        finally:
            reserved.close()  # every worker listens on the port now
        first = pool[0].line
        print(first[:-1] + f", workers: {workers})" if first.endswith(")") else first, flush=True)

        async def supervise(worker: _Worker) -> None:
            while True:
                assert worker.proc is not None
                code = await worker.proc.wait()
                logger.warning(
                    "worker %d (pid %d) exited with %s; starting it again in %g s",
                    worker.index,
                    worker.proc.pid,
                    code,
                    RESTART_DELAY,
                )
                await asyncio.sleep(RESTART_DELAY)
                try:
                    await worker.start()
                except (RuntimeError, OSError) as exc:
                    logger.error("worker %d didn't start: %s", worker.index, exc)

        watchers = [loop.create_task(supervise(w)) for w in pool]
        await stop
        return 0
    finally:
        for task in watchers:
            task.cancel()
        restore_signals()
        for worker in pool:
            if worker.proc is not None and worker.proc.returncode is None:
                worker.proc.terminate()
        for worker in pool:
            if worker.proc is not None:
                try:
                    await asyncio.wait_for(worker.proc.wait(), 15)
                except asyncio.TimeoutError:
                    worker.proc.kill()
                    await worker.proc.wait()
