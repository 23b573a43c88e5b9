"""Run the fuzz targets of harnesses.py under atheris, each for a bounded time.

    .venv/bin/python fuzz/run.py [--seconds 60] [--rss-limit-mb 512] [TARGET ...]

Each target runs in its own process (libFuzzer via atheris, ripple's Python
code instrumented for coverage), starting from the checked-in seed corpus in
``fuzz/corpus/<target>/``; inputs it discovers go to a scratch directory
(``--corpus-dir`` keeps them). libFuzzer itself enforces the bounds:
``-max_total_time`` for the time, ``-rss_limit_mb`` for memory (an input that
pushes the process past it is reported as a crash), ``-timeout`` per input
(a hang is a crash too).

A crash leaves its input in ``fuzz/crashes/`` and makes this script exit 1:
reproduce it with ``fuzz/run.py --reproduce FILE``, then keep it as a
regression test in ``tests/protocol/``. The summary gives executions per
second and in total for each target.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"
TARGET_NAMES = ("frames", "http", "extensions")


def worker(target: str, argv: list[str]) -> None:
    """In the child: instrument ripple, then hand the target to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["ripple", "harnesses"]):
        import harnesses

    function = harnesses.TARGETS[target]

    def one_input(data: bytes) -> None:
        function(data)

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


def reproduce(path: Path) -> int:
    """Run one saved input through its target, in-process, without atheris."""
    sys.path.insert(0, str(HERE))
    import harnesses

    target = next((t for t in TARGET_NAMES if path.name.startswith(f"{t}-")), None)
    if target is None:
        target = path.parent.name
    if target not in harnesses.TARGETS:
        print(f"can't tell the target of {path}: name it <target>-...", file=sys.stderr)
        return 2
    harnesses.TARGETS[target](path.read_bytes())
    print(f"{path}: no crash in {target}")
    return 0


STAT = re.compile(r"stat::(\w+):\s*(\d+)")


def run_target(
    target: str, seconds: int, rss_limit_mb: int, max_len: int, corpus_dir: Path | None
) -> dict[str, object]:
    CRASHES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"ripple-fuzz-{target}-") as scratch:
        work = corpus_dir / target if corpus_dir is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            target,
            f"-max_total_time={seconds}",
            f"-rss_limit_mb={rss_limit_mb}",
            "-timeout=10",
            f"-max_len={max_len}",
            "-print_final_stats=1",
            f"-artifact_prefix={CRASHES}/{target}-",
            str(work),
            str(CORPUS / target),
        ]
        start = time.monotonic()
        # The child's own limit is the real bound; this one only catches a
        # child that ignores it.
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
        elapsed = time.monotonic() - start
    stats = {k: int(v) for k, v in STAT.findall(proc.stderr)}
    crashed = proc.returncode != 0
    if crashed:
        sys.stderr.write(proc.stderr[-6000:])
    return {
        "target": target,
        "execs": stats.get("number_of_executed_units", 0),
        "execs_per_s": stats.get("average_exec_per_sec", 0),
        "peak_rss_mb": stats.get("peak_rss_mb", 0),
        "seconds": round(elapsed, 1),
        "crashed": crashed,
    }


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        sys.path.insert(0, str(HERE))
        worker(sys.argv[2], sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGET_NAMES)}")
    parser.add_argument(
        "--seconds",
        type=int,
        default=int(os.environ.get("FUZZ_SECONDS", "60")),
        help="time per target (default: $FUZZ_SECONDS or 60)",
    )
    parser.add_argument("--rss-limit-mb", type=int, default=512)
    parser.add_argument("--max-len", type=int, default=4096, help="largest input, in bytes")
    parser.add_argument("--corpus-dir", type=Path, help="keep discovered inputs here")
    parser.add_argument("--reproduce", type=Path, help="run one saved input, no fuzzing")
    options = parser.parse_args()
    if options.reproduce is not None:
        return reproduce(options.reproduce)
    unknown = set(options.targets) - set(TARGET_NAMES)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {TARGET_NAMES}")
    options.targets = options.targets or list(TARGET_NAMES)
    results = []
    for target in options.targets:
        print(f"fuzzing {target} for {options.seconds} s...", flush=True)
        results.append(
            run_target(
                target, options.seconds, options.rss_limit_mb, options.max_len, options.corpus_dir
            )
        )
    print(f"\n{'target':<12}{'execs':>12}{'execs/s':>10}{'peak RSS MB':>13}  result")
    for r in results:
        result = "CRASH (see fuzz/crashes/)" if r["crashed"] else "ok"
        print(
            f"{r['target']:<12}{r['execs']:>12}{r['execs_per_s']:>10}"
            f"{r['peak_rss_mb']:>13}  {result}"
        )
    return 1 if any(r["crashed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
