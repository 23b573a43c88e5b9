"""Instructions per echoed message, counted by valgrind's callgrind.

``run.py``'s rates and CPU times move by up to ±20% from run to run on a
shared VM, which hides any change worth less than that. This counts the
instructions each server executes in user space per echoed message: the
Python interpreter, the event loop, the library, its C extension. The
count is the same from run to run (within 0.5%), so a change of a few
percent shows, and libraries compare by a number the machine's load
doesn't move. It leaves out the kernel (the read and write system calls,
the same two per message for every server here) and cache misses, so it
is a complement to ``run.py``, not a replacement.

Each target's echo server (``servers/<library>_server.py``, as ``run.py``
starts it) runs under ``valgrind --tool=callgrind``; this process is the
client, outside valgrind: ``--clients`` connections each send a warm-up of
``--warmup`` 32-byte text messages one at a time, then the counters are
zeroed (``callgrind_control -z``), then each sends ``--messages`` more, and
the counters are dumped. Instructions / (clients x messages) is the result.

Usage::

    .venv/bin/python bench/instructions.py              # the default targets
    .venv/bin/python bench/instructions.py --targets ripple-cb/uvloop picows/uvloop

``--scenario handshake`` counts per handshake instead: ``--messages``
connections opened and closed (the closing handshake included), ``--clients``
at a time.

Writes ``results/instructions.md`` and ``.json`` (``instructions_handshake.*``
for handshakes; ``--out`` elsewhere).
Needs valgrind (``apt install valgrind``); Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"
RESULTS = HERE / "results"
SRC = HERE.parent / "src"

DEFAULT_TARGETS = [
    "ripple/uvloop",
    "ripple-cb/uvloop",
    "picows/uvloop",
    "websockets/uvloop",
    "aiohttp/uvloop",
    "ripple/asyncio",
    "ripple-cb/asyncio",
    "picows/asyncio",
]
MESSAGE = "x" * 32


@dataclass
class Count:
    target: str
    messages: int
    instructions: int

    @property
    def per_message(self) -> float:
        return self.instructions / self.messages


def _env(name: str, src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIPPLE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    if name == "ripple-cb":
        env["RIPPLE_BENCH_CALLBACK"] = "1"
    elif name == "ripple-py":
        env["RIPPLE_NO_SPEEDUPS"] = "1"
    return env


async def _client(port: int, count: int) -> None:
    import ripple

    async with ripple.connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
        for _ in range(count):
            await ws.send(MESSAGE)
            if await ws.recv() != MESSAGE:
                raise RuntimeError("the server echoed something else")


async def _handshakes(port: int, count: int, concurrency: int) -> None:
    import ripple

    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots, ripple.connect(f"ws://127.0.0.1:{port}/", compression=None):
            pass  # open, then the closing handshake

    await asyncio.gather(*[one() for _ in range(count)])


async def _load(port: int, args: argparse.Namespace, count: int) -> None:
    if args.scenario == "handshake":
        done = _handshakes(port, count, args.clients)
    else:
        done = asyncio.gather(*[_client(port, count) for _ in range(args.clients)])
    await asyncio.wait_for(done, args.timeout)


def _control(command: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", command, str(pid)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _summary(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {path}")


def measure(target: str, args: argparse.Namespace, workdir: Path) -> Count:
    """One target's server under callgrind; return the count for the window."""
    name, loop = target.split("/")
    library = "ripple" if name.startswith("ripple") else name
    out = workdir / f"{name}-{loop}.%p"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    cmd += [str(SERVERS / f"{library}_server.py"), "--scenario", "echo", "--loop", loop]
    cmd += ["--port", "0"]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(name, args.src),
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()  # "port N ...", once listening (valgrind is slow to start)
        if not line.startswith("port "):
            raise RuntimeError(f"{target}: the server said {line!r}")
        port = int(line.split()[1])
        asyncio.run(_load(port, args, args.warmup))
        _control("-z", proc.pid)
        asyncio.run(_load(port, args, args.messages))
        _control("-d", proc.pid)
        dumps = sorted(workdir.glob(f"{name}-{loop}.{proc.pid}.*"))
        if not dumps:
            raise RuntimeError(f"{target}: callgrind wrote no dump")
        ops = args.messages if args.scenario == "handshake" else args.clients * args.messages
        return Count(target, ops, _summary(dumps[-1]))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the control channel: the server exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _revision(src: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def report(counts: list[Count], args: argparse.Namespace) -> str:
    by = {c.target: c.per_message for c in counts}
    if args.scenario == "handshake":
        what, unit = "handshake", "handshake"
        load = (
            f"{args.messages} connections opened and closed, {args.clients} at a time, after "
            f"{args.warmup} to warm up"
        )
    else:
        what, unit = "echoed message", "message"
        load = (
            f"{args.clients} clients x {args.messages} messages of 32-byte text after "
            f"{args.warmup} each to warm up"
        )
    lines = [
        f"# Instructions per {what} (callgrind)",
        "",
        f"`bench/instructions.py --scenario {args.scenario}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {load}; "
        f"ripple git {_revision(args.src)}; "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}.",
        "",
        f"User-space instructions the server executes per {what} (the kernel's",
        "system calls are not counted). Lower is better; the ratio is to picows on the",
        "same loop (picows = 1.00).",
        "",
        f"| target | instructions / {unit} | x picows |",
        "| --- | ---: | ---: |",
    ]
    for c in counts:
        ref = by.get("picows/" + c.target.split("/")[1])
        ratio = f"{c.per_message / ref:.2f}" if ref else "n/a"
        lines.append(f"| {c.target} | {c.per_message:,.0f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=DEFAULT_TARGETS)
    parser.add_argument(
        "--scenario",
        choices=("echo", "handshake"),
        default="echo",
        help="handshake: open and close --messages connections, --clients at a time",
    )
    parser.add_argument("--clients", type=int, default=64, help="handshake: at a time")
    parser.add_argument("--messages", type=int, default=300, help="per client, counted")
    parser.add_argument("--warmup", type=int, default=50, help="per client, not counted")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per load phase")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--src", type=Path, default=SRC, help="the ripple the servers import (A/B: another tree)"
    )
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt install valgrind", file=sys.stderr)
            return 2
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets:
            count = measure(target, args, Path(tmp))
            print(f"{target:20s} {count.per_message:9,.0f} instructions/operation", flush=True)
            counts.append(count)
    text = report(counts, args)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "instructions" if args.scenario == "echo" else f"instructions_{args.scenario}"
    (args.out / f"{name}.md").write_text(text)
    data = {
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "src")},
        "python": platform.python_version(),
        "ripple_git": _revision(args.src),
        "counts": [
            {"target": c.target, "messages": c.messages, "instructions": c.instructions}
            for c in counts
        ],
    }
    (args.out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
