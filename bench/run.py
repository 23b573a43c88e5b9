#!/usr/bin/env python3
"""ripple against websockets, aiohttp and picows, on asyncio and on uvloop, in one run.

Each measurement is a fresh server process pinned to CPU 0 and the load
generator (``bench/loadgen.py``, the same for every server, on a fresh uvloop
loop; in this process, or a fresh one with ``--isolated``) pinned to CPU 1.
Scenarios (compression off everywhere):

1. echo round trips, one client, 32-byte text messages;
2. echo, 64 clients each keeping one 32-byte text message in flight;
3. echo of 1 MiB binary messages, one client;
4. broadcast of K messages to N clients (1,000 and 5,000): time until every
   client has every message, and deliveries per server-CPU-second;
5. handshakes per second (open, 101, close handshake, TCP close; 16 at a time);
6. server RSS per idle connection over N connections (idle_memory.py's method);
7. the chat's publish strategies to 1,000 clients: ``await ws.send()`` in a
   loop, ``asyncio.gather`` of the sends, a task per send, and the library's
   broadcast (the row of scenario 4).

Results: a table per event loop with medians, the spread (min-max) over the
repeats and each target's ratio to ripple on the same loop, written to
``bench/results/latest.{json,md,png}``, then PASS/FAIL lines for the issue's
targets.

    .venv/bin/python bench/run.py            # full: 3 repeats, under 15 minutes
    .venv/bin/python bench/run.py --quick    # a subset of targets, small N and K, < 1 minute
    .venv/bin/python bench/run.py --profile  # cProfile of ripple's server in scenario 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import idle_memory  # noqa: E402 (bench/ isn't a package)

RESULTS = HERE / "results"
LOADGEN = HERE / "loadgen.py"

# A run is load-generator bound when the load generator is this busy...
LG_BUSY = 0.90
# ...and the server less than this.
SERVER_BUSY = 0.90


# ---------------------------------------------------------------------------
# What is measured
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    library: str
    loop: str
    speedups: bool = True
    callback: bool = False  # ripple's on_message() callback instead of `async for`

    @property
    def key(self) -> str:
        name = self.library if self.speedups or self.library != "ripple" else "ripple-py"
        if self.callback:
            name = "ripple-cb"
        return f"{name}/{self.loop}"

    @property
    def baseline(self) -> str:
        return f"ripple/{self.loop}"

    def args(self) -> list[str]:
        out = ["--library", self.library, "--loop", self.loop]
        if self.callback:
            out.append("--callback")
        return out if self.speedups else [*out, "--no-speedups"]


ALL_TARGETS = [
    Target("ripple", "asyncio"),
    Target("ripple", "asyncio", speedups=False),
    Target("websockets", "asyncio"),
    Target("aiohttp", "asyncio"),
    Target("picows", "asyncio"),
    Target("ripple", "asyncio", callback=True),
    Target("ripple", "uvloop"),
    Target("websockets", "uvloop"),
    Target("aiohttp", "uvloop"),
    Target("picows", "uvloop"),
    Target("ripple", "uvloop", callback=True),
]
QUICK_TARGETS = ["ripple/asyncio", "websockets/asyncio", "aiohttp/asyncio"]
QUICK_TARGETS += ["ripple/uvloop", "picows/uvloop"]


@dataclass(frozen=True)
class Metric:
    key: str  # a field of the load generator's result
    unit: str
    higher_is_better: bool = True
    wall: bool = True  # a wall-clock rate: the load generator may be the limit
    saturating: bool = True  # the server should be busy all the time


@dataclass
class Scenario:
    key: str
    title: str
    args: list[str]
    metrics: list[Metric]
    only: tuple[str, ...] | None = None  # libraries it applies to
    alias: str | None = None  # the same measurement as another scenario
    only_targets: tuple[str, ...] | None = None  # --quick: fewer targets

    def applies(self, target: Target) -> bool:
        if target.callback and not self.key.startswith("echo"):
            return False  # the callback API only changes how the echo handler receives
        return (self.only is None or target.library in self.only) and (
            self.only_targets is None or target.key in self.only_targets
        )


RATE_CPU = Metric("per_cpu_s", "deliveries / server CPU s", wall=False)
TIME_TO_ALL = Metric("time_ms", "ms until all have all", higher_is_better=False)


def loadgen_args(**options: Any) -> list[str]:
    """``loadgen_args(clients=64, binary=True)`` -> ``["--clients", "64", "--binary"]``."""
    out: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, str(value)]
    return out


def scenarios(quick: bool) -> list[Scenario]:
    timing = {"warmup": 0.05, "duration": 0.25} if quick else {"warmup": 0.2, "duration": 0.6}
    n_small, k_small = (300, 10) if quick else (1000, 30)
    n_big, k_big = (1000, 10) if quick else (5000, 10)
    n_idle = 500 if quick else 5000
    out = [
        Scenario(
            "echo1",
            "1. echo, 1 client, 32 B",
            loadgen_args(scenario="echo", clients=1, size=32, **timing),
            [Metric("per_s", "round trips/s", saturating=False)],
        ),
        Scenario(
            "echo64",
            "2. echo, 64 clients, 32 B",
            loadgen_args(scenario="echo", clients=64, size=32, **timing),
            [Metric("per_s", "messages/s")],
        ),
        Scenario(
            "echo1m",
            "3. echo, 1 MiB binary",
            loadgen_args(scenario="echo", clients=1, size=2**20, binary=True, **timing),
            [Metric("per_s", "round trips/s")],
        ),
    ]
    for n, k in [(n_small, k_small)] + ([] if quick else [(n_big, k_big)]):
        out.append(
            Scenario(
                f"bcast{n}",
                f"4. broadcast {k} msgs to {n:,}",
                loadgen_args(
                    scenario="broadcast", clients=n, messages=k, size=64, strategy="broadcast"
                ),
                [TIME_TO_ALL, RATE_CPU],
            )
        )
    out += [
        Scenario(
            "handshake",
            "5. handshakes (16 at a time)",
            loadgen_args(scenario="handshake", concurrency=16, **timing),
            [Metric("per_s", "handshakes/s")],
        ),
        Scenario(
            "idle",
            f"6. idle RSS, {n_idle:,} conns",
            loadgen_args(scenario="idle", clients=n_idle),
            [Metric("kib_per_conn", "KiB / connection", higher_is_better=False, wall=False)],
        ),
    ]
    for strategy, label in [
        ("await", "await send() loop"),
        ("gather", "asyncio.gather"),
        ("task", "task per send"),
    ]:
        out.append(
            Scenario(
                f"pub-{strategy}",
                f"7. publish to {n_small:,}: {label}",
                loadgen_args(
                    scenario="broadcast",
                    clients=n_small,
                    messages=k_small,
                    size=64,
                    strategy=strategy,
                ),
                [TIME_TO_ALL, RATE_CPU],
                only=("ripple", "websockets", "aiohttp"),
                only_targets=("ripple/asyncio", "websockets/asyncio") if quick else None,
            )
        )
    out.append(
        Scenario(
            "pub-broadcast",
            f"7. publish to {n_small:,}: broadcast()",
            [],
            [TIME_TO_ALL, RATE_CPU],
            alias=f"bcast{n_small}",
        )
    )
    return out


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    scenario: str
    repeat: int
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def lg_bound(self) -> bool:
        r = self.result
        return (
            r.get("loadgen_cpu_frac", 0) >= LG_BUSY and r.get("server_cpu_frac", 1) < SERVER_BUSY
        )

    @property
    def unsaturated(self) -> bool:
        r = self.result
        return r.get("loadgen_cpu_frac", 1) < LG_BUSY and r.get("server_cpu_frac", 1) < SERVER_BUSY


def run_one(target: Target, scenario: Scenario, args: argparse.Namespace, repeat: int) -> Run:
    """One measurement: loadgen.measure() in this process (pinned to the load
    generator's CPU), or ``--isolated``: bench/loadgen.py in a fresh process."""
    argv = [*target.args(), *scenario.args]
    argv += ["--cpu", str(args.loadgen_cpu), "--server-cpu", str(args.server_cpu)]
    argv += ["--max-seconds", str(args.run_timeout)]
    if args.quick and "idle" in scenario.args:
        argv += ["--settle", "0.1"]
    run = Run(target.key, scenario.key, repeat)
    t0 = time.monotonic()
    if args.isolated:
        try:
            proc = subprocess.run(
                [sys.executable, str(LOADGEN), *argv],
                capture_output=True,
                text=True,
                timeout=args.run_timeout + 15,
                check=False,
            )
            lines = proc.stdout.strip().splitlines()
            data = (
                json.loads(lines[-1]) if lines else {"error": f"no output: {proc.stderr[-500:]}"}
            )
        except subprocess.TimeoutExpired:
            data = {"error": f"timed out after {args.run_timeout + 15} s"}
        except (OSError, ValueError) as exc:
            data = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        import loadgen

        data = loadgen.measure(argv)
        gc.collect()
    if "error" in data:
        run.error = data["error"]
    else:
        run.result = data
    run.seconds = time.monotonic() - t0
    return run


def describe(run: Run, scenario: Scenario) -> str:
    if run.error:
        return f"ERROR {run.error}"
    r = run.result
    parts = [f"{fmt(r.get(m.key))} {m.unit}" for m in scenario.metrics]
    parts.append(
        f"(server CPU {r['server_cpu_frac']:.0%}, load generator {r['loadgen_cpu_frac']:.0%})"
    )
    return "  ".join(parts)


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:.2f}M"
    if a >= 1e5:
        return f"{value / 1e3:.0f}k"
    if a >= 1e4:
        return f"{value / 1e3:.1f}k"
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------


@dataclass
class Cell:
    values: list[float]
    lg_bound: int  # runs where the load generator was the limit
    unsaturated: int  # runs where neither process was busy
    errors: list[str]

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def mark(self) -> str:
        n = len(self.values)
        if not n:
            return ""
        if self.lg_bound * 2 >= n:
            return "‡"
        if self.unsaturated * 2 >= n:
            return "§"
        return ""


def summarize(
    runs: list[Run], scens: list[Scenario], targets: list[Target]
) -> list[dict[str, Any]]:
    rows = []
    for scen in scens:
        source = scen.alias or scen.key
        for metric in scen.metrics:
            cells: dict[str, Any] = {}
            for target in targets:
                if not scen.applies(target):
                    continue
                mine = [r for r in runs if r.target == target.key and r.scenario == source]
                if not mine:
                    continue
                ok = [r for r in mine if not r.error and r.result.get(metric.key) is not None]
                cell = Cell(
                    [r.result[metric.key] for r in ok],
                    sum(r.lg_bound for r in ok) if metric.wall else 0,
                    sum(r.unsaturated for r in ok) if metric.wall and metric.saturating else 0,
                    [r.error for r in mine if r.error],
                )
                cells[target.key] = {
                    "median": cell.median,
                    "min": min(cell.values) if cell.values else None,
                    "max": max(cell.values) if cell.values else None,
                    "values": cell.values,
                    "mark": cell.mark,
                    "lg_bound_runs": cell.lg_bound,
                    "unsaturated_runs": cell.unsaturated,
                    "errors": cell.errors,
                    "server_cpu_us_per_op": _cpu_per_op(ok),
                }
            for target in targets:
                cell_d = cells.get(target.key)
                base = cells.get(target.baseline)
                if cell_d is None:
                    continue
                ratio = None
                if base and base["median"] and cell_d["median"] is not None:
                    ratio = cell_d["median"] / base["median"]
                cell_d["ratio"] = ratio
            rows.append(
                {
                    "alias": scen.alias,
                    "scenario": scen.key,
                    "title": scen.title,
                    "metric": metric.key,
                    "unit": metric.unit,
                    "higher_is_better": metric.higher_is_better,
                    "cells": cells,
                }
            )
    return rows


def _cpu_per_op(runs: list[Run]) -> float | None:
    values = [
        r.result["server_cpu_s"] / r.result["count"] * 1e6 for r in runs if r.result.get("count")
    ]
    return statistics.median(values) if values else None


def cell_text(cell: dict[str, Any] | None, spread: bool = True) -> str:
    if cell is None:
        return "n/a"
    if cell["median"] is None:
        return "error"
    text = fmt(cell["median"])
    if cell.get("ratio") is not None:
        text += f" x{cell['ratio']:.2f}"
    if spread and len(cell["values"]) > 1:
        text += f" ({fmt(cell['min'])}-{fmt(cell['max'])})"
    return text + cell["mark"]


def tables(rows: list[dict[str, Any]], targets: list[Target]) -> str:
    out = []
    for loop in ("asyncio", "uvloop"):
        keys = [t.key for t in targets if t.loop == loop]
        if not keys:
            continue
        out.append(f"### {loop}\n")
        out.append("| scenario | unit | " + " | ".join(keys) + " |")
        out.append("| --- | --- | " + " | ".join("---:" for _ in keys) + " |")
        for row in rows:
            arrow = "↑" if row["higher_is_better"] else "↓"
            cells = [cell_text(row["cells"].get(k)) for k in keys]
            out.append(f"| {row['title']} | {row['unit']} {arrow} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def cpu_table(rows: list[dict[str, Any]], targets: list[Target]) -> str:
    """Server CPU per operation: much less sensitive to a busy machine than rates."""
    keys = [t.key for t in targets]
    out = [
        "| scenario | " + " | ".join(keys) + " |",
        "| --- | " + " | ".join("---:" for _ in keys) + " |",
    ]
    seen = set()
    for row in rows:
        if row["scenario"] in seen or row["scenario"] == "idle":
            continue
        seen.add(row["scenario"])
        cells = []
        for k in keys:
            c = row["cells"].get(k)
            v = c and c.get("server_cpu_us_per_op")
            cells.append("n/a" if not v else f"{v:.1f}" if v < 100 else f"{v:.0f}")
        out.append(f"| {row['title']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# The targets
# ---------------------------------------------------------------------------


def checks(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(PASS|FAIL|N/A, target, details) for each of the issue's targets.

    Verdicts compare the medians of the table. Each also says how the same
    comparison comes out per server CPU second (rates divided by the server's
    CPU use), which a busy machine disturbs much less; the "elsewhere" targets
    get a second line for it.
    """
    by = {(r["scenario"], r["metric"]): r for r in rows}

    def value(row: dict[str, Any], key: str, per_cpu: bool) -> float | None:
        cell = row["cells"].get(key)
        if not cell:
            return None
        if per_cpu and row["metric"] == "per_s":
            us = cell.get("server_cpu_us_per_op")
            return 1e6 / us if us else None
        if per_cpu and row["metric"] == "time_ms":
            return None  # the per_cpu_s row of the same measurement covers it
        return cell["median"]  # type: ignore[no-any-return]

    def better(
        row: dict[str, Any], a: str, b: str, factor: float = 1.0, per_cpu: bool = False
    ) -> bool | None:
        va, vb = value(row, a, per_cpu), value(row, b, per_cpu)
        if va is None or vb is None:
            return None
        return va >= factor * vb if row["higher_is_better"] else va * factor <= vb

    def ratio(row: dict[str, Any], a: str, b: str, per_cpu: bool = False) -> str:
        va, vb = value(row, a, per_cpu), value(row, b, per_cpu)
        if va is None or vb is None or not vb:
            return "n/a"
        return f"{va / vb:.2f}x"

    def label(row: dict[str, Any]) -> str:
        return f"{row['title']} [{row['unit']}]"

    def verdict(results: list[bool | None]) -> str:
        if any(r is None for r in results) or not results:
            return "N/A"
        return "PASS" if all(results) else "FAIL"

    out: list[tuple[str, str, str]] = []
    echo64 = by.get(("echo64", "per_s"))

    def factor_check(me: str, peer: str, factor: float, row: dict[str, Any] | None) -> None:
        name = f"{me} ≥ {factor:g}x {peer} on {row['title'] if row else 'echo64'}"
        if row is None:
            out.append(("N/A", name, "not measured"))
            return
        ok = better(row, me, peer, factor)
        detail = ratio(row, me, peer)
        marks = [row["cells"].get(k, {}).get("mark") for k in (me, peer)]
        if any(marks):
            detail += f" (cells marked {', '.join(m for m in marks if m)}: see legend)"
        if row["metric"] == "per_s":
            cpu_ok = better(row, me, peer, factor, per_cpu=True)
            detail += (
                f"; per server CPU-s: {ratio(row, me, peer, per_cpu=True)} ({verdict([cpu_ok])})"
            )
        out.append((verdict([ok]), name, detail))

    def ahead_elsewhere(me: str, peers: list[str], skip: set[str]) -> None:
        for per_cpu in (False, True):
            results: list[bool | None] = []
            losses = []
            for row in rows:
                if row["scenario"] in skip or row.get("alias"):
                    continue
                if per_cpu and row["metric"] == "time_ms":
                    continue
                for peer in peers:
                    if peer not in row["cells"] or me not in row["cells"]:
                        continue
                    ok = better(row, me, peer, per_cpu=per_cpu)
                    results.append(ok)
                    if ok is False:
                        a, b = value(row, me, per_cpu), value(row, peer, per_cpu)
                        losses.append(f"{label(row)} vs {peer}: {fmt(a)} vs {fmt(b)}")
            name = f"{me} ahead of {', '.join(peers)} elsewhere"
            if per_cpu:
                name += " (per server CPU-s)"
            detail = f"{len(results)} comparisons" + (
                "; behind on " + "; ".join(losses) if losses else ""
            )
            out.append((verdict(results), name, detail))

    py, c = "ripple-py/asyncio", "ripple/uvloop"
    factor_check(py, "websockets/asyncio", 2.0, echo64)
    factor_check(py, "aiohttp/asyncio", 1.3, echo64)
    ahead_elsewhere(py, ["websockets/asyncio", "aiohttp/asyncio"], {"echo64"})
    factor_check(c, "picows/uvloop", 1.0, echo64)
    factor_check(c, "picows/uvloop", 1.0, by.get(("echo1m", "per_s")))
    ahead_elsewhere(
        c, ["websockets/uvloop", "aiohttp/uvloop", "picows/uvloop"], {"echo64", "echo1m"}
    )
    # The same echoes through ripple's callback API, like for like with picows' listener.
    for key in ("echo1", "echo64", "echo1m"):
        factor_check("ripple-cb/uvloop", "picows/uvloop", 1.0, by.get((key, "per_s")))
    for row in rows:
        if row["scenario"].startswith("bcast") and row["metric"] == "per_cpu_s":
            for loop in ("asyncio", "uvloop"):
                factor_check(f"ripple/{loop}", f"websockets/{loop}", 3.0, row)
    idle = by.get(("idle", "kib_per_conn"))
    for key in ("ripple/asyncio", "ripple/uvloop"):
        v = value(idle, key, False) if idle else None
        name = f"{key} idle RSS ≤ 8 KiB per connection (compression off)"
        out.append(
            ("N/A", name, "not measured")
            if v is None
            else ("PASS" if v <= 8 else "FAIL", name, f"{v:.2f} KiB")
        )
    return out


# ---------------------------------------------------------------------------
# Machine, chart, files
# ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info = idle_memory.machine_info()

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    for name in ("aiohttp", "picows", "uvloop"):
        info[name] = ver(name)
    probe = subprocess.run(
        [sys.executable, "-c", "from ripple.protocol.masking import SPEEDUPS; print(SPEEDUPS)"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "RIPPLE_NO_SPEEDUPS"},
        check=False,
    )
    info["ripple_speedups"] = probe.stdout.strip() == "True"
    info["python_build"] = platform.python_build()[0]
    return info


def source_digest() -> str:
    """What ripple's source is now (others may edit the tree during a run)."""
    import hashlib

    digest = hashlib.sha256()
    src = HERE.parent / "src" / "ripple"
    for path in sorted([*src.rglob("*.py"), *src.rglob("*.c")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def load() -> dict[str, Any]:
    """How busy the machine is besides us."""
    out: dict[str, Any] = {"loadavg": os.getloadavg()}
    try:
        with open("/proc/pressure/cpu") as f:
            out["cpu_pressure_some_avg10"] = float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        pass
    return out


def load_text(load: dict[str, Any]) -> str:
    text = "load average " + "/".join(f"{x:.2f}" for x in load["loadavg"])
    if "cpu_pressure_some_avg10" in load:
        text += f", CPU pressure {load['cpu_pressure_some_avg10']:.0f}% (some, avg10)"
    return text


def chart(rows: list[dict[str, Any]], targets: list[Target], path: Path) -> None:
    """Per loop, every target's performance relative to ripple (>1: better than
    ripple, whichever way the metric goes), median with the min-max spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    rows = [r for r in rows if not r["scenario"].startswith("pub-broadcast")]
    loops = [loop for loop in ("asyncio", "uvloop") if any(t.loop == loop for t in targets)]
    fig, axes = plt.subplots(
        1, len(loops), figsize=(7.5 * len(loops), 0.42 * len(rows) + 2), squeeze=False
    )
    for ax, loop in zip(axes[0], loops, strict=True):
        keys = [t.key for t in targets if t.loop == loop]
        step = 0.7 / max(len(keys), 1)
        xs_all = [1.0]
        for i, key in enumerate(keys):
            ys, xs, lo, hi = [], [], [], []
            for j, row in enumerate(rows):
                cell = row["cells"].get(key)
                base = row["cells"].get(f"ripple/{loop}")
                if not cell or not base or not cell["median"] or not base["median"]:
                    continue
                b = base["median"]
                up = row["higher_is_better"]
                x = cell["median"] / b if up else b / cell["median"]
                ends = sorted(v / b if up else b / v for v in (cell["min"], cell["max"]))
                ys.append(j - 0.35 + step / 2 + i * step)
                xs.append(x)
                lo.append(max(x - ends[0], 0))
                hi.append(max(ends[1] - x, 0))
                xs_all += ends
            ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", markersize=5, capsize=2, label=key)
        ax.axvline(1.0, color="black", linewidth=0.8)
        for j in range(len(rows)):
            ax.axhline(j + 0.5, color="#dddddd", linewidth=0.5)
        ax.set_xscale("log")
        ticks = [
            t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8) if min(xs_all) / 1.5 < t < max(xs_all) * 1.5
        ]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.set_xlim(min(xs_all) / 1.3, max(xs_all) * 1.3)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([f"{r['title']} ({r['unit']})" for r in rows], fontsize=7)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel("relative to ripple on the same loop (> 1: better than ripple)")
        ax.set_title(f"server on {loop}: median, min-max over repeats")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(
    rows: list[dict[str, Any]],
    targets: list[Target],
    verdicts: list[tuple[str, str, str]],
    meta: dict[str, Any],
) -> str:
    m = meta["machine"]
    p = meta["parameters"]
    lines = [
        "# ripple benchmarks",
        "",
        f"`{meta['command']}`, {meta['date']}, {meta['elapsed_s']:.0f} s, "
        f"{p['repeats']} repeat(s) per cell.",
        "",
        "Each cell: the median, x ratio to ripple on the same event loop (ripple = 1.00; "
        "↑ higher is better, ↓ lower is better), and the spread (min-max) over the repeats. "
        f"‡: the load generator was the limit (its CPU ≥ {LG_BUSY:.0%} while the server's "
        f"< {SERVER_BUSY:.0%}) in most repeats, so the server could do more. "
        f"§: neither process was busy (both < {SERVER_BUSY:.0%} CPU) although the scenario "
        "should keep the server busy: the machine was busy with something else or latency "
        "bound. ripple-py is ripple with `RIPPLE_NO_SPEEDUPS=1` (pure-Python masking); its "
        "ratio is to ripple (with the C speedup) on the same loop. ripple-cb is ripple "
        "echoing through the callback API (`ws.on_message(ws.send_nowait)`) instead of "
        "`async for` and `await send()`: no task switch per message, as in picows' "
        "listener; echo scenarios only.",
        "",
        tables(rows, targets),
        "## Server CPU per operation (µs, median; lower is better)",
        "",
        "Server CPU time (schedstat) / round trips, handshakes or deliveries in the "
        "measurement: much less sensitive than the rates to other load on the machine.",
        "",
        cpu_table(rows, targets),
        "",
        "## The issue's targets",
        "",
        "```",
        *[f"{v:4} {name}: {detail}" for v, name, detail in verdicts],
        "```",
        "",
        "## How",
        "",
        "- Server: `bench/servers/<library>_server.py`, a fresh process per measurement, "
        f"pinned to CPU {p['server_cpu']}, keepalive pings off, compression off, "
        "max message size 4 MiB, each library's defaults otherwise. Handlers: "
        "`async for message in ws: await ws.send(message)` (ripple-cb: "
        "`ws.on_message(ws.send_nowait)`; aiohttp: `send_str`/"
        "`send_bytes`; picows: a `WSListener` sending the decoded text back, binary as "
        "the frame's memoryview).",
        f"- Load generator: `bench/loadgen.py` on uvloop, pinned to CPU {p['loadgen_cpu']}, "
        "the same for every server: raw asyncio Protocols, pre-built handshake, frames "
        "masked once; it checks every received byte against the expected stream.",
        "- Broadcast equivalents: ripple `ripple.broadcast()`, websockets "
        "`websockets.asyncio.server.broadcast()`, aiohttp the awaited loop of `send_str` "
        "(no synchronous send in its public API; it suspends only when a buffer is "
        "full), picows a loop of `transport.send()` (synchronous). picows has no "
        "awaitable send, so the await/gather/task strategies don't apply to it (n/a).",
        "- Idle RSS: `bench/idle_memory.py`'s client and method (VmRSS after gc.collect() "
        "before and after opening N connections, 20 warm-up connections first).",
        "",
        "## Machine",
        "",
        f"{m['cpu']}, {m['cpus']} CPUs, {m['memory_mib']} MiB, {m['os']}, {m['python']}; "
        f"ripple {m['ripple']} (git {m['ripple_commit']}, src sha256 "
        f"{m['ripple_src_sha256']}, C speedup active: {m['ripple_speedups']}), "
        f"websockets {m['websockets']}, aiohttp {m['aiohttp']}, picows {m['picows']}, "
        f"uvloop {m['uvloop']}. Machine load before the run: {load_text(meta['load_before'])}; "
        f"after: {load_text(meta['load_after'])}.",
    ]
    notes = meta.get("notes") or []
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Profile
# ---------------------------------------------------------------------------


def profile(args: argparse.Namespace) -> int:
    """cProfile the ripple server (asyncio, C speedup) in the 64-client echo."""
    import pstats
    import tempfile

    stats_path = Path(tempfile.mkdtemp()) / "ripple_echo64.prof"
    base = ["--library", "ripple", "--loop", args.profile_loop, "--scenario", "echo"]
    base += ["--clients", "64", "--size", "32", "--duration", "3"]
    base += ["--cpu", str(args.loadgen_cpu), "--server-cpu", str(args.server_cpu)]
    results = {}
    for name, extra in [("plain", []), ("profiled", ["--profile-server", str(stats_path)])]:
        proc = subprocess.run(
            [sys.executable, str(LOADGEN), *base, *extra],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        if "error" in results[name]:
            print(results[name]["error"], proc.stderr[-2000:], file=sys.stderr)
            return 1
    plain, prof = results["plain"], results["profiled"]
    us_plain = plain["server_cpu_s"] / plain["count"] * 1e6
    # The profile covers the whole server run, not only the measured window:
    # count every echo the server did (handled = received).
    stats = pstats.Stats(str(stats_path))
    total_calls = 0
    for (filename, _, fname), (_cc, nc, _tt, _ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if fname == "send" and filename.endswith("connection.py"):
            total_calls = nc
    lines = [
        f"ripple server ({args.profile_loop}, C speedup), 64 clients echoing 32-byte text.",
        f"Without the profiler: {plain['per_s']:,.0f} messages/s, server CPU "
        f"{us_plain:.1f} µs per message ({plain['server_cpu_frac']:.0%} of a core).",
        f"With cProfile: {prof['per_s']:,.0f} messages/s; {total_calls:,} sends profiled.",
        "",
        "Per message (tottime / sends; cProfile inflates Python calls, so read the shares):",
    ]
    n = max(total_calls, 1)
    entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    total_tt = sum(v[2] for _, v in entries)
    for (filename, line, fname), (_cc, nc, tt, ct, _) in entries[:25]:
        where = f"{Path(filename).name}:{line}({fname})" if line else fname
        lines.append(
            f"  {tt / n * 1e6:7.2f} µs {tt / total_tt:6.1%}  cum {ct / n * 1e6:7.2f} µs  "
            f"{nc / n:5.2f} calls/msg  {where}"
        )
    groups: dict[str, float] = {}
    for (filename, _, fname), (_cc, _nc, tt, _ct, _) in entries:
        groups[_category(filename, fname)] = groups.get(_category(filename, fname), 0.0) + tt
    lines += ["", "By layer (share of profiled time, and of the unprofiled CPU per message):"]
    for group, tt in sorted(groups.items(), key=lambda kv: -kv[1]):
        share = tt / total_tt
        lines.append(f"  {share:6.1%}  ~{share * us_plain:5.1f} µs  {group}")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "profile_echo64.txt").write_text(text + "\n")
    print(f"wrote {RESULTS / 'profile_echo64.txt'} (raw stats: {stats_path})", file=sys.stderr)
    return 0


def _category(filename: str, function: str) -> str:
    if filename == "~":  # built-ins
        if "socket" in function or "epoll" in function:
            return "kernel: socket send/recv, epoll (syscalls)"
        return "built-ins (deque, struct, futures, ...)"
    if "/ripple/" in filename:
        return "ripple (connection.py, protocol/)"
    if filename.endswith("_server.py"):
        return "the handler (bench/servers/ripple_server.py)"
    if "asyncio" in filename or filename.endswith(("selectors.py", "events.py")):
        return "asyncio event loop and transports"
    return "other"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="a subset, small N and K, < 1 min")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--targets", nargs="+", default=None, help="e.g. ripple/asyncio")
    parser.add_argument("--scenarios", nargs="+", default=None, help="e.g. echo64 idle")
    parser.add_argument("--max-minutes", type=float, default=None, help="default 15 (quick: 1)")
    parser.add_argument("--run-timeout", type=float, default=60, help="seconds per measurement")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--loadgen-cpu", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.* go")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--isolated", action="store_true", help="a fresh load generator process per measurement"
    )
    parser.add_argument("--profile", action="store_true", help="profile ripple in scenario 2")
    parser.add_argument("--profile-loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    if args.profile:
        return profile(args)
    repeats = args.repeats or (1 if args.quick else 3)
    # --quick: the measurements stop at 45 s, leaving time for the files and the chart.
    max_minutes = args.max_minutes or (0.75 if args.quick else 14.0)
    wanted = args.targets or (QUICK_TARGETS if args.quick else [t.key for t in ALL_TARGETS])
    targets = [t for t in ALL_TARGETS if t.key in wanted]
    unknown = set(wanted) - {t.key for t in ALL_TARGETS}
    if unknown:
        parser.error(
            f"unknown targets {sorted(unknown)}: choose from {[t.key for t in ALL_TARGETS]}"
        )
    scens = scenarios(args.quick)
    if args.scenarios:
        scens = [s for s in scens if s.key in args.scenarios or s.alias in args.scenarios]
    measured = [s for s in scens if s.alias is None]
    for s in scens:  # an alias needs its measurement
        if s.alias and all(m.key != s.alias for m in measured):
            measured.append(next(x for x in scenarios(args.quick) if x.key == s.alias))
    todo = [
        (rep, scen, target)
        for rep in range(repeats)
        for scen in measured
        # Rotate the order per repeat so that no target always runs first.
        for target in targets[rep % len(targets) :] + targets[: rep % len(targets)]
        if scen.applies(target)
    ]
    affinity = os.sched_getaffinity(0)  # the load generator pins this process
    t0 = time.monotonic()
    deadline = t0 + max_minutes * 60
    load_before = load()
    digest_before = source_digest()
    notes: list[str] = []
    runs: list[Run] = []
    print(
        f"{len(todo)} measurements: {len(targets)} targets, {len(measured)} scenarios, "
        f"{repeats} repeat(s); {load_text(load_before)}",
        file=sys.stderr,
    )
    for i, (rep, scen, target) in enumerate(todo):
        if time.monotonic() > deadline:
            notes.append(
                f"stopped after {i} of {len(todo)} measurements: --max-minutes {max_minutes} "
                "reached; the missing cells are n/a"
            )
            print(notes[-1], file=sys.stderr)
            break
        run = run_one(target, scen, args, rep)
        runs.append(run)
        print(
            f"[{i + 1}/{len(todo)} {time.monotonic() - t0:5.0f}s] {scen.key:13} {target.key:18} "
            f"{describe(run, scen)}  {run.seconds:.1f}s",
            file=sys.stderr,
        )
    elapsed = time.monotonic() - t0
    os.sched_setaffinity(0, affinity)
    rows = summarize(runs, scens, targets)
    verdicts = checks(rows)
    meta = {
        "command": " ".join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "elapsed_s": elapsed,
        "machine": machine(),
        "load_before": load_before,
        "load_after": load(),
        "parameters": {
            "quick": args.quick,
            "repeats": repeats,
            "server_cpu": args.server_cpu,
            "loadgen_cpu": args.loadgen_cpu,
            "scenarios": {s.key: s.args for s in measured},
            "targets": [t.key for t in targets],
        },
        "notes": notes,
    }
    busy = [
        x.get("cpu_pressure_some_avg10", 0.0) for x in (meta["load_before"], meta["load_after"])
    ]
    if max(busy) > 10:
        meta["notes"].append(
            f"other work competed for the CPUs (CPU pressure {busy[0]:.0f}% before, "
            f"{busy[1]:.0f}% after): rates are noisy (see the spreads and § marks); the "
            "CPU-per-operation table is steadier"
        )
    digest_after = source_digest()
    meta["ripple_source"] = {"before": digest_before, "after": digest_after}
    if digest_after != digest_before:
        meta["notes"].append(
            f"ripple's source changed during the run (sha256 {digest_before} before, "
            f"{digest_after} after): measurements of ripple may mix two versions"
        )
    if any(r.error for r in runs):
        meta["notes"].append(
            "errors: "
            + "; ".join(f"{r.scenario} {r.target}: {r.error}" for r in runs if r.error)[:2000]
        )
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, targets, verdicts, meta)
    (args.out / "latest.md").write_text(text)
    (args.out / "latest.json").write_text(
        json.dumps(
            {
                **meta,
                "rows": rows,
                "checks": [{"verdict": v, "target": n, "detail": d} for v, n, d in verdicts],
                "runs": [r.__dict__ for r in runs],
            },
            indent=1,
            default=str,
        )
        + "\n"
    )
    if not args.no_chart:
        chart(rows, targets, args.out / "latest.png")
    print(tables(rows, targets))
    for v, name, detail in verdicts:
        print(f"{v:4} {name}: {detail}")
    print(
        f"\n{len(runs)} measurements in {elapsed:.0f} s; wrote {args.out}/latest.md, "
        f"latest.json{'' if args.no_chart else ', latest.png'}",
        file=sys.stderr,
    )
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
