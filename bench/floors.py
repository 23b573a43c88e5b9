"""The floors under the two speed targets ripple misses, measured beside the peers.

``run.py`` shows two targets ripple doesn't reach. This measures what each is
bounded by, beside the peers in the same run:

1. **Unmasking 1 MiB in pure Python.** ripple without its C speedup
   (``RIPPLE_NO_SPEEDUPS=1``) must XOR every received byte with the client's
   masking key (RFC 6455, section 5.3) using the standard library only. Here
   every stdlib way to do that we know of is timed on 1 MiB, each in a fresh
   process, beside the C masks websockets and aiohttp ship (and ripple's own).
   ripple's 1 MiB echo round trip from ``results/latest.json`` (an earlier run
   of ``run.py``; the file says which), with its C unmask swapped for the
   fastest pure-Python one, is then set against websockets' and aiohttp's
   whole round trips from the same file.
2. **An awaitable receive.** ``async for message in ws`` wakes the handler's
   task for each message: a future, its result, a loop callback, a task step.
   picows has no awaitable receive; its listener is a callback, as ripple's
   ``on_message`` is. Here a closed loop of N events delivers each one either
   to a callback (what picows and ``on_message`` do) or to a task waiting on a
   future (what any ``await ws.recv()`` does), with no I/O, on asyncio and on
   uvloop. The difference is the wake-up's price per message, added to
   ripple's callback path on the 64-client echo in ``latest.json`` and set
   against picows there.

Usage::

    .venv/bin/python bench/floors.py                 # ~35 s
    .venv/bin/python bench/floors.py --messages 50000 --repeats 3

Writes ``results/floors.md`` and ``results/floors.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "src"))

from ripple.protocol import masking  # noqa: E402  (after the path above)

MIB = 1 << 20

Mask = Callable[[bytes, bytes], Any]


def _whole_int(data: bytes, mask: bytes) -> bytes:
    # One int for the whole payload: the conversions' cost without chunking.
    size = len(data)
    key = int.from_bytes(mask * (size // 4) + mask[: size % 4], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")


_TABLES = [bytes(b ^ k for b in range(256)) for k in range(256)]


def _strided_translate(data: bytes, mask: bytes) -> bytearray:
    # translate() maps bytes without regard to position, so each of the four
    # key phases is a strided slice of its own; in place on a bytearray copy
    # (strided slices of a bytearray timed twice as fast as of bytes).
    out = bytearray(data)
    for phase in range(4):
        out[phase::4] = out[phase::4].translate(_TABLES[mask[phase]])
    return out


def _candidates() -> tuple[dict[str, Mask], dict[str, Mask]]:
    """(pure Python, C) masking functions, each as f(data, mask) -> masked."""
    python: dict[str, Mask] = {
        "ripple apply_mask_python (int XOR, 8 KiB chunks)": masking.apply_mask_python,
        "one int for the whole payload": _whole_int,
        "translate() on 4 strided slices, in place; a bytearray": _strided_translate,
    }
    c: dict[str, Mask] = {}
    if masking.SPEEDUPS:
        c["ripple _speedups.apply_mask"] = masking.apply_mask
    try:
        from websockets.speedups import apply_mask as ws_mask
    except ImportError:
        pass
    else:
        c["websockets speedups.apply_mask"] = ws_mask
    try:
        from aiohttp._websocket import helpers as aiohttp_helpers
    except ImportError:
        pass
    else:
        # aiohttp masks a bytearray in place; the copy (~1% of the time) is counted.
        def in_place(f: Callable[[bytes, bytearray], None]) -> Mask:
            def run(data: bytes, mask: bytes) -> bytearray:
                buf = bytearray(data)
                f(mask, buf)
                return buf

            return run

        # Private names: either may go in another aiohttp version.
        fallback = getattr(aiohttp_helpers, "_websocket_mask_python", None)
        fast = getattr(aiohttp_helpers, "websocket_mask", None)
        if fallback is not None:
            python["aiohttp's pure-Python fallback (the same); a bytearray"] = in_place(fallback)
        if fast is not None and fast is not fallback:
            c["aiohttp websocket_mask (Cython)"] = in_place(fast)
    return python, c


def _time_one_mask(name: str) -> float:
    """Seconds per 1 MiB for one candidate, best of 10 x 5 calls, in this process."""
    python, c = _candidates()
    f = {**python, **c}[name]
    data, mask = os.urandom(MIB), os.urandom(4)
    for _ in range(10):
        # Warm-up: tables, and malloc's threshold for mapping fresh memory
        # per 1 MiB buffer, which rises as such buffers are freed.
        f(data, mask)
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(5):
            f(data, mask)
        best = min(best, (time.perf_counter() - t0) / 5)
    return best


def time_masks(repeats: int) -> list[dict[str, Any]]:
    data, mask = os.urandom(MIB), os.urandom(4)
    expected = masking.apply_mask_python(data, mask)
    python, c = _candidates()
    kinds = {name: "pure Python" for name in python}
    kinds.update({name: "C" for name in c})
    for name, f in {**python, **c}.items():
        if bytes(f(data, mask)) != expected:  # a wrong mask can't count
            raise SystemExit(f"{name} masked 1 MiB wrongly")
    # Each candidate in a fresh process, the candidates alternated: in one
    # process, whether a 1 MiB buffer comes with fresh pages to fault in
    # depends on what was freed before, and that moved a candidate's time by
    # up to 1.7x with the order they ran in.
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(repeats):
        for name in kinds:
            out = subprocess.run(
                [sys.executable, __file__, "--one-mask", name],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
            times[name].append(float(out))
    return [
        {"kind": kind, "name": name, "ms_per_mib": min(times[name]) * 1e3}
        for name, kind in kinds.items()
    ]


# Seconds for one wake-up measurement: 200,000 messages take about 1 s.
_WAKEUP_TIMEOUT = 120


async def _wakeups(messages: int, via_task: bool) -> float:
    """CPU seconds per message delivered by `messages` chained loop callbacks."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    if via_task:
        waiter: asyncio.Future[bytes] | None = None

        def event(message: bytes) -> None:
            # The read callback hands the message to the waiting recv().
            assert waiter is not None
            waiter.set_result(message)

        async def consumer() -> None:
            nonlocal waiter
            for _ in range(messages):
                waiter = loop.create_future()
                loop.call_soon(event, b"x")  # stands for the next read event
                await waiter
            done.set_result(None)

        t0 = time.process_time()
        task = loop.create_task(consumer())
        try:
            await asyncio.wait_for(done, _WAKEUP_TIMEOUT)
        finally:
            task.cancel()  # a no-op once it has finished
    else:
        count = 0

        def handler(message: bytes) -> None:
            nonlocal count
            count += 1
            if count == messages:
                done.set_result(None)
            else:
                loop.call_soon(event, message)  # stands for the next read event

        def event(message: bytes) -> None:
            # The read callback calls the user's callback: no task, no future.
            handler(message)

        t0 = time.process_time()
        loop.call_soon(event, b"x")
        await asyncio.wait_for(done, _WAKEUP_TIMEOUT)
    return (time.process_time() - t0) / messages


def time_wakeups(messages: int, repeats: int) -> list[dict[str, Any]]:
    loops: dict[str, Callable[[Any], Any]] = {"asyncio": asyncio.run}
    try:
        import uvloop
    except ImportError:
        pass
    else:
        loops["uvloop"] = uvloop.run
    rows = []
    for loop_name, run in loops.items():
        cells: dict[str, list[float]] = {"callback": [], "task": []}
        for _ in range(repeats):  # alternated, so drift hits both alike
            cells["callback"].append(run(_wakeups(messages, False)))
            cells["task"].append(run(_wakeups(messages, True)))
        cb = statistics.median(cells["callback"]) * 1e6
        task = statistics.median(cells["task"]) * 1e6
        rows.append(
            {"loop": loop_name, "callback_us": cb, "task_us": task, "wakeup_us": task - cb}
        )
    return rows


def _latest() -> dict[str, Any] | None:
    path = RESULTS / "latest.json"
    if not path.exists():
        return None
    latest: dict[str, Any] = json.loads(path.read_text())
    return latest


def _cpu(latest: dict[str, Any], scenario: str, target: str) -> float | None:
    for row in latest["rows"]:
        if row["scenario"] == scenario and target in row["cells"]:
            value = row["cells"][target].get("server_cpu_us_per_op")
            return float(value) if value is not None else None
    return None


def report(
    masks: list[dict[str, Any]], wakeups: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    latest = _latest()
    ws_c = next((r for r in masks if r["name"].startswith("websockets")), None)
    lines = [
        "# The floors under the missed targets",
        "",
        f"`bench/floors.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"CPython {platform.python_version()}, {platform.machine()}.",
        "",
        "## 1. Unmasking 1 MiB",
        "",
        "Best of the repeats, ms per MiB; ratio to websockets' C mask in this run.",
        '"A bytearray": the result is left in a bytearray; a message is bytes, one',
        "more copy of 1 MiB, which the two int candidates include.",
        "",
        "| kind | how | ms per MiB | x websockets' C |",
        "| --- | --- | ---: | ---: |",
    ]
    for r in masks:
        ratio = f"{r['ms_per_mib'] / ws_c['ms_per_mib']:.0f}" if ws_c else "n/a"
        lines.append(f"| {r['kind']} | {r['name']} | {r['ms_per_mib']:.3f} | {ratio} |")
    best = min((r for r in masks if r["kind"] == "pure Python"), key=lambda r: r["ms_per_mib"])
    summary: dict[str, Any] = {"fastest_pure_python": best}
    ripple_c = next((r for r in masks if r["name"].startswith("ripple _speedups")), None)
    ripple_cpu = _cpu(latest, "echo1m", "ripple/asyncio") if latest is not None else None
    if latest is not None and ripple_c is not None and ripple_cpu is not None:
        # ripple's own round trip with only the unmask swapped: what pure
        # Python could reach if nothing else in it cost more than with C.
        floor = ripple_cpu / 1e3 - ripple_c["ms_per_mib"] + best["ms_per_mib"]
        summary["pure_python_floor_ms"] = floor
        lines += [
            "",
            "Server CPU of a 1 MiB echo round trip on asyncio in ms, from `latest.json`",
            f"({latest['date']}). The floor is ripple's round trip ({ripple_cpu / 1e3:.2f})",
            f"with its C unmask swapped for the fastest pure-Python one here: {floor:.2f}.",
            "",
            "| peer | its round trip | the pure-Python floor, x it |",
            "| --- | ---: | ---: |",
        ]
        for peer in ("ripple-py/asyncio", "websockets/asyncio", "aiohttp/asyncio"):
            cpu = _cpu(latest, "echo1m", peer)
            if cpu is not None:
                lines.append(f"| {peer} | {cpu / 1e3:.2f} | {floor / (cpu / 1e3):.2f} |")
                summary[peer] = {"round_trip_ms": cpu / 1e3}
    lines += [
        "",
        "## 2. Waking a task per message",
        "",
        "CPU µs per message, median of the repeats: a chain of loop callbacks, each",
        "message delivered to a callback or to a task awaiting a future.",
        "",
        "| loop | to a callback | to a waiting task | the wake-up |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in wakeups:
        lines.append(
            f"| {r['loop']} | {r['callback_us']:.2f} | {r['task_us']:.2f} | {r['wakeup_us']:.2f} |"
        )
    uv = next((r for r in wakeups if r["loop"] == "uvloop"), None)
    if latest is not None and uv is not None:
        cells = {
            t: _cpu(latest, "echo64", f"{t}/uvloop") for t in ("ripple", "ripple-cb", "picows")
        }
        if all(v is not None for v in cells.values()):
            ripple, cb, picows = (float(v) for v in cells.values())  # type: ignore[arg-type]
            # `async for` runs the callback path's work plus a task wake-up.
            wake = uv["wakeup_us"]
            bound = cb + wake
            lines += [
                "",
                "Echo, 64 clients, uvloop, server CPU µs per message from `latest.json`:",
                f"ripple with `async for` {ripple:.1f}, ripple's `on_message` callback {cb:.1f},",
                f"picows {picows:.1f}. `async for` is the callback path plus a task wake-up:",
                f"at least {cb:.1f} + {wake:.2f} = {bound:.1f}, {bound / picows:.2f}x picows.",
                "To match picows with `async for`, the callback path would have to be",
                f"{wake:.2f} µs ({wake / picows:.0%}) cheaper than picows' listener.",
            ]
            summary["echo64_uvloop"] = {
                "ripple_us": ripple,
                "ripple_cb_us": cb,
                "picows_us": picows,
                "wakeup_us": uv["wakeup_us"],
                "async_bound_us": bound,
            }
    return "\n".join(lines) + "\n", summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="per wake-up measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "floors", help="path without suffix")
    parser.add_argument("--one-mask", metavar="NAME", help=argparse.SUPPRESS)  # time_masks' child
    args = parser.parse_args(argv)
    if args.one_mask is not None:
        print(_time_one_mask(args.one_mask))
        return 0
    if args.messages < 1 or args.repeats < 1:
        parser.error("--messages and --repeats must be at least 1")
    masks = time_masks(args.repeats)
    wakeups = time_wakeups(args.messages, args.repeats)
    text, summary = report(masks, wakeups)
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    data = {"masks": masks, "wakeups": wakeups, "summary": summary, "argv": sys.argv[1:]}
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
