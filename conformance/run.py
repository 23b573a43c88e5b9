#!/usr/bin/env python3
"""Run the Autobahn|Testsuite against ripple's echo server or its client.

By default the server under test is started as a subprocess on a free
loopback port, ``wstest -m fuzzingclient`` (Python 2.7, from
``conformance/.venv27``, see ``setup.sh``) is run against it, and the JSON
reports are summarised.

With ``--client`` it is the other way round: ``wstest -m fuzzingserver`` is
started on a free port and a client driver (``client_driver.py``, which uses
``ripple.connect``) runs every case against it, echoing each message.

Exit status: 0 when every case's ``behavior`` and ``behaviorClose`` are OK or
INFORMATIONAL, 1 when some case fails (or was never reported), 2 when the run
itself could not be completed (no wstest, server did not start, timeout, ...).

Only the standard library is used, so any Python 3.10+ can run this file.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_WSTEST = HERE / ".venv27" / "bin" / "wstest"
DEFAULT_REPORTS_DIR = HERE / "reports" / "servers"
DEFAULT_CLIENT_REPORTS_DIR = HERE / "reports" / "clients"
DEFAULT_SERVER_CMD = "{python} -m ripple echo --host 127.0.0.1 --port {port}"
CLIENT_DRIVER = HERE / "client_driver.py"
DEFAULT_CLIENT_CMD = "{python} {driver} --url {url} --agent {agent} --case-timeout {case_timeout}"
DEFAULT_SERVER_AGENT = "testee"
DEFAULT_CLIENT_AGENT = "ripple"
# Sections 1-10; 12.* and 13.* (permessage-deflate) are not run by default.
DEFAULT_CASES = ",".join(f"{n}.*" for n in range(1, 11))
HOST = "127.0.0.1"

PASSING = frozenset({"OK", "INFORMATIONAL"})
# Results always shown in the summary line, in this order; anything else
# the suite reports is appended after them.
BEHAVIOR_ORDER = ("OK", "INFORMATIONAL", "NON-STRICT", "FAILED", "UNIMPLEMENTED")
CLOSE_ORDER = ("OK", "INFORMATIONAL", "NON-STRICT", "WRONG CODE", "UNCLEAN", "FAILED")
MISSING = "MISSING"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2

_RUNNING_RE = re.compile(r"^Running test case ID (\S+) for agent")
_PLANNED_RE = re.compile(r"^Cases = (\[.*\])\s*$")
_COUNT_RE = re.compile(r"^Ok, will run (\d+) test cases")
# client_driver.py's line for each finished case, and for a failed one.
_DRIVER_CASE_RE = re.compile(r"^case (\d+)/(\d+): (.*)$")
# Per-case report fields worth showing for a failing case.
_DETAIL_FIELDS = (
    "description",
    "expectation",
    "result",
    "resultClose",
    "expected",
    "received",
    "expectedClose",
    "localCloseCode",
    "localCloseReason",
    "remoteCloseCode",
    "remoteCloseReason",
    "wasClean",
    "wasNotCleanReason",
    "droppedByMe",
    "failedByMe",
    "wasCloseHandshakeTimeout",
    "wasServerConnectionDropTimeout",
    "wasOpenHandshakeTimeout",
)
_FLAG_FIELDS = (
    "droppedByMe",
    "failedByMe",
    "wasCloseHandshakeTimeout",
    "wasServerConnectionDropTimeout",
    "wasOpenHandshakeTimeout",
)


class HarnessError(Exception):
    """The conformance run could not be carried out."""


@dataclass
class WstestProgress:
    """What the wstest console log says about the run so far."""

    planned: list[str] | None = None
    planned_count: int | None = None
    started: list[str] = field(default_factory=list)

    def describe(self) -> str:
        total = self.planned_count if self.planned_count is not None else "?"
        text = f"{len(self.started)}/{total} cases started"
        if self.started:
            text += f", last started: {self.started[-1]}"
        if self.planned and len(self.planned) > len(self.started):
            # A case is only logged once its opening handshake succeeded.
            text += f", next: {self.planned[len(self.started)]}"
        return text

    @classmethod
    def from_log(cls, text: str) -> WstestProgress:
        progress = cls()
        for line in text.splitlines():
            if m := _RUNNING_RE.match(line):
                progress.started.append(m.group(1))
            elif m := _COUNT_RE.match(line):
                progress.planned_count = int(m.group(1))
            elif m := _PLANNED_RE.match(line):
                try:
                    cases = ast.literal_eval(m.group(1))
                except (ValueError, SyntaxError):
                    continue
                progress.planned = [str(c) for c in cases]
        return progress


@dataclass
class CaseResult:
    case_id: str
    behavior: str
    behavior_close: str
    remote_close_code: int | None = None
    duration_ms: int | None = None
    report_file: str | None = None

    @property
    def passed(self) -> bool:
        return self.behavior in PASSING and self.behavior_close in PASSING

    @property
    def section(self) -> str:
        return self.case_id.split(".", 1)[0]


# --------------------------------------------------------------------------- helpers


def case_sort_key(case_id: str) -> tuple[int | str, ...]:
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def split_patterns(value: str | None) -> list[str]:
    if not value:
        return []
    return [p.strip() for p in value.split(",") if p.strip()]


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def command_argv(template: str, option: str, **values: Any) -> list[str]:
    """Split a command template, then fill in the placeholders in ``values``."""
    try:
        return [arg.format(**values) for arg in shlex.split(template)]
    except (KeyError, IndexError, ValueError) as exc:
        names = [f"{{{name}}}" for name in values]
        known = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise HarnessError(f"bad {option} {template!r}: {exc!r} (only {known} are known)") from exc


def server_argv(template: str, port: int, python: str) -> list[str]:
    """Split the server command template, then fill in {port} and {python}."""
    return command_argv(template, "--server-cmd", port=port, python=python)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """Terminate a process started with start_new_session=True, and its group."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    else:
        # The leader is gone; make sure nothing it spawned lingers.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.poll()


def spawn_logged(
    argv: Sequence[str], log: Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (see stop_process), its output going to ``log``.

    OSError (no such program, ...) is left to the caller.
    """
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def wait_for_port(
    host: str, port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            raise HarnessError(
                f"server exited with status {rc} before accepting connections; "
                f"last output ({log}):\n{tail(log)}"
            )
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise HarnessError(
        f"server did not accept connections on {host}:{port} within {timeout:g}s; "
        f"last output ({log}):\n{tail(log)}"
    )


def wstest_env() -> dict[str, str]:
    """Environment for the Python 2.7 wstest process, free of Python 3 settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def clean_reports_dir(outdir: Path, agent: str) -> None:
    """Remove the files an earlier run left, so stale results are never read."""
    outdir.mkdir(parents=True, exist_ok=True)
    patterns = ["index.json", "index.html", "spec.json", "wstest.log", "server.log", "client.log"]
    patterns += [f"{agent}_case_*.json", f"{agent}_case_*.html"]
    for pattern in patterns:
        for path in outdir.glob(pattern):
            path.unlink()


def clean_agent_name(agent: str) -> str:
    # The suite turns the agent into file names; keep it simple.
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", agent).strip("_")
    return cleaned or "testee"


# --------------------------------------------------------------------------- running


def supervise(
    proc: subprocess.Popen[bytes],
    name: str,
    log: Path,
    timeout: float,
    *,
    quiet: bool,
    describe: Callable[[], str],
    check: Callable[[], None],
    progress_every: float,
) -> None:
    """Wait for ``proc`` (``name`` in messages, output in ``log``) to exit with status 0.

    While it runs, ``check`` may raise HarnessError to give up, and unless
    ``quiet`` a progress line from ``describe()`` goes to stderr every
    ``progress_every`` seconds. Raises HarnessError on timeout or a non-zero
    exit status; ``proc`` is stopped whichever way this returns.
    """
    start = time.monotonic()
    deadline = start + timeout
    next_report = start + progress_every
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now >= deadline:
                stop_process(proc)
                raise HarnessError(
                    f"{name} timed out after {timeout:g}s ({describe()}); "
                    f"raise --timeout or look at {log}"
                )
            check()
            if not quiet and now >= next_report:
                next_report = now + progress_every
                print(f"  ... {now - start:.0f}s: {describe()}", file=sys.stderr, flush=True)
            time.sleep(0.25)
    finally:
        if proc.poll() is None:
            stop_process(proc)
    if proc.returncode != 0:
        raise HarnessError(
            f"{name} exited with status {proc.returncode}; last output ({log}):\n{tail(log)}"
        )


def run_wstest(
    wstest: Path,
    spec: Path,
    log: Path,
    timeout: float,
    quiet: bool,
    progress_every: float = 20.0,
) -> WstestProgress:
    """Run the fuzzing client until it finishes; raise HarnessError on timeout."""

    def progress() -> WstestProgress:
        return WstestProgress.from_log(log.read_text(errors="replace"))

    def check() -> None:
        if progress().planned_count == 0:
            # wstest never exits when no case matches the patterns.
            raise HarnessError("no Autobahn case matches the --cases/--exclude patterns")

    argv = [str(wstest), "-m", "fuzzingclient", "-s", str(spec)]
    try:
        proc = spawn_logged(argv, log, wstest_env(), cwd=spec.parent)
    except OSError as exc:
        raise HarnessError(f"cannot start {wstest}: {exc}") from exc
    supervise(
        proc,
        "wstest",
        log,
        timeout,
        quiet=quiet,
        describe=lambda: progress().describe(),
        check=check,
        progress_every=progress_every,
    )
    return progress()


def load_results(outdir: Path, agent: str) -> dict[str, CaseResult]:
    index = outdir / "index.json"
    try:
        data = json.loads(index.read_text())
    except FileNotFoundError as exc:
        raise HarnessError(f"wstest wrote no {index}") from exc
    except ValueError as exc:
        raise HarnessError(f"cannot parse {index}: {exc}") from exc
    results: dict[str, CaseResult] = {}
    # No entry for the agent at all when not a single case got connected.
    for case_id, entry in data.get(agent, {}).items():
        results[case_id] = CaseResult(
            case_id=case_id,
            behavior=str(entry.get("behavior")),
            behavior_close=str(entry.get("behaviorClose")),
            remote_close_code=entry.get("remoteCloseCode"),
            duration_ms=entry.get("duration"),
            report_file=entry.get("reportfile"),
        )
    return results


def _shorten(value: Any, limit: int = 400) -> Any:
    """Keep huge payloads (e.g. section 9 messages) out of the summary."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) <= limit:
        return value
    return f"{text[:limit]}... ({len(text)} chars)"


def case_details(outdir: Path, result: CaseResult) -> dict[str, Any]:
    if not result.report_file:
        return {}
    try:
        report = json.loads((outdir / result.report_file).read_text())
    except (OSError, ValueError):
        return {}
    return {k: _shorten(report[k]) for k in _DETAIL_FIELDS if k in report}


# --------------------------------------------------------------------------- summary


def ordered_counts(counter: Counter[str], order: Iterable[str]) -> dict[str, int]:
    """Counts for the known results (zeros included) followed by any others."""
    known = list(order)
    counts = {name: counter.get(name, 0) for name in known}
    for name in sorted(counter):
        if name not in counts:
            counts[name] = counter[name]
    return counts


def build_summary(
    results: dict[str, CaseResult],
    planned: Sequence[str] | None,
    outdir: Path,
    elapsed: float,
    server_status: str | None,
) -> dict[str, Any]:
    cases = dict(results)
    for case_id in planned or ():
        if case_id not in cases:
            cases[case_id] = CaseResult(case_id, MISSING, MISSING)
    ordered = sorted(cases.values(), key=lambda r: case_sort_key(r.case_id))

    sections: dict[str, dict[str, Any]] = {}
    for result in ordered:
        sec = sections.setdefault(
            result.section, {"cases": 0, "behavior": Counter(), "behaviorClose": Counter()}
        )
        sec["cases"] += 1
        sec["behavior"][result.behavior] += 1
        sec["behaviorClose"][result.behavior_close] += 1

    failures = []
    for result in ordered:
        if not result.passed:
            failures.append(
                {
                    "id": result.case_id,
                    "behavior": result.behavior,
                    "behaviorClose": result.behavior_close,
                    "remoteCloseCode": result.remote_close_code,
                    "reportfile": result.report_file,
                    "details": case_details(outdir, result),
                }
            )

    behavior = Counter(r.behavior for r in ordered)
    close = Counter(r.behavior_close for r in ordered)
    return {
        "ok": not failures and server_status is None,
        "cases": len(ordered),
        "behavior": ordered_counts(behavior, BEHAVIOR_ORDER),
        "behaviorClose": ordered_counts(close, CLOSE_ORDER),
        "sections": {
            name: {
                "cases": sec["cases"],
                "behavior": dict(sorted(sec["behavior"].items())),
                "behaviorClose": dict(sorted(sec["behaviorClose"].items())),
            }
            for name, sec in sorted(sections.items(), key=lambda kv: case_sort_key(kv[0]))
        },
        "failures": failures,
        "server_problem": server_status,
        "elapsed_seconds": round(elapsed, 1),
        "reports_dir": str(outdir),
    }


def _fmt_counts(counts: dict[str, int]) -> str:
    order = {name: i for i, name in enumerate(BEHAVIOR_ORDER + CLOSE_ORDER)}
    items = sorted(counts.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
    return ", ".join(f"{name} {n}" for name, n in items)


def summary_line(summary: dict[str, Any], label: str = "autobahn") -> str:
    parts = [f"{n} {name}" for name, n in summary["behavior"].items()]
    return f"{label}: {summary['cases']} cases, " + ", ".join(parts)


def _one_line(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return " ".join(text.split())


def detail_lines(details: dict[str, Any]) -> list[str]:
    """A compact, console-friendly view of a failing case's report."""
    lines = [
        f"{key}: {_one_line(details[key])}"
        for key in (
            "expectation",
            "result",
            "resultClose",
            "expected",
            "received",
            "expectedClose",
        )
        if key in details
    ]
    if "remoteCloseCode" in details:
        lines.append(
            f"remote close: {details['remoteCloseCode']} "
            f"{_one_line(details.get('remoteCloseReason'))}; "
            f"local close: {details.get('localCloseCode')}; clean: {details.get('wasClean')}"
            + (
                f" ({_one_line(details['wasNotCleanReason'])})"
                if details.get("wasNotCleanReason")
                else ""
            )
        )
    flags = [key for key in _FLAG_FIELDS if details.get(key)]
    if flags:
        lines.append("flags: " + ", ".join(flags))
    return lines


def print_summary(
    summary: dict[str, Any],
    max_details: int = 40,
    label: str = "autobahn",
    problem_label: str = "server problem",
) -> None:
    for name, sec in summary["sections"].items():
        print(
            f"section {name}: {sec['cases']} cases, {_fmt_counts(sec['behavior'])}; "
            f"close: {_fmt_counts(sec['behaviorClose'])}"
        )
    failures = summary["failures"]
    if failures:
        print()
        print(f"{len(failures)} failing case(s):")
        shown = 0
        for f in failures:
            print(
                f"  {f['id']}: behavior={f['behavior']} behaviorClose={f['behaviorClose']} "
                f"remoteCloseCode={f['remoteCloseCode']}"
            )
            if shown < max_details:
                shown += 1
                for line in detail_lines(f["details"]):
                    print(f"      {line}")
    if summary["server_problem"]:
        print()
        print(f"{problem_label}: {summary['server_problem']}")
    print()
    print(f"reports: {summary['reports_dir']}/index.html ({summary['elapsed_seconds']}s)")
    if failures:
        print(
            "failing: "
            + " ".join(f"{f['id']}={f['behavior']}/{f['behaviorClose']}" for f in failures)
        )
    close = ", ".join(f"{n} {name}" for name, n in summary["behaviorClose"].items())
    print(f"{label} close: {summary['cases']} cases, {close}")
    print(summary_line(summary, label))


# --------------------------------------------------------------------------- client mode


@dataclass
class DriverProgress:
    """What client_driver.py's output says about the run so far."""

    total: int | None = None
    finished: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def describe(self, planned: Sequence[str] | None) -> str:
        total = self.total if self.total is not None else "?"
        text = f"{self.finished}/{total} cases run"
        if self.finished:
            text += f", last: {case_name(self.finished, planned)}"
        return text

    @classmethod
    def from_log(cls, text: str) -> DriverProgress:
        progress = cls()
        for line in text.splitlines():
            if m := _DRIVER_CASE_RE.match(line):
                number = int(m.group(1))
                progress.total = int(m.group(2))
                progress.finished = max(progress.finished, number)
                if m.group(3).startswith("ERROR "):
                    progress.errors.append((number, m.group(3)[len("ERROR ") :]))
        return progress


def case_name(number: int, planned: Sequence[str] | None) -> str:
    """The case id of the fuzzing server's case ``number`` (1-based), if known."""
    if planned and 1 <= number <= len(planned):
        return planned[number - 1]
    return f"#{number}"


def start_fuzzingserver(wstest: Path, spec: Path, log: Path) -> subprocess.Popen[bytes]:
    # --webport 0: no extra HTTP server on port 8080.
    argv = [str(wstest), "-m", "fuzzingserver", "-s", str(spec), "--webport", "0"]
    try:
        return spawn_logged(argv, log, wstest_env(), cwd=spec.parent)
    except OSError as exc:
        raise HarnessError(f"cannot start {wstest}: {exc}") from exc


def run_client_driver(
    argv: list[str],
    log: Path,
    fuzzer: subprocess.Popen[bytes],
    fuzzer_log: Path,
    planned: Sequence[str] | None,
    timeout: float,
    quiet: bool,
    progress_every: float = 20.0,
) -> DriverProgress:
    """Run the client driver until it finishes; raise HarnessError if it can't."""

    def progress() -> DriverProgress:
        return DriverProgress.from_log(log.read_text(errors="replace"))

    def check() -> None:
        rc = fuzzer.poll()
        if rc is not None:
            raise HarnessError(
                f"wstest fuzzingserver exited with status {rc} during the run; "
                f"last output ({fuzzer_log}):\n{tail(fuzzer_log)}"
            )

    try:
        proc = spawn_logged(argv, log, dict(os.environ, PYTHONUNBUFFERED="1"))
    except OSError as exc:
        raise HarnessError(f"cannot start client {argv[0]!r}: {exc}") from exc
    supervise(
        proc,
        "client driver",
        log,
        timeout,
        quiet=quiet,
        describe=lambda: progress().describe(planned),
        check=check,
        progress_every=progress_every,
    )
    return progress()


def run_client(args: argparse.Namespace, wstest: Path, cases: list[str]) -> int:
    """--client: wstest's fuzzing server against the client driver."""
    agent = clean_agent_name(args.agent or DEFAULT_CLIENT_AGENT)
    outdir: Path = (args.reports_dir or DEFAULT_CLIENT_REPORTS_DIR).resolve()
    clean_reports_dir(outdir, agent)

    port = free_port()
    url = f"ws://{HOST}:{port}"
    argv = command_argv(
        args.client_cmd,
        "--client-cmd",
        python=sys.executable,
        driver=str(CLIENT_DRIVER),
        url=url,
        agent=agent,
        case_timeout=f"{args.case_timeout:g}",
    )
    client_log = outdir / "client.log"
    wstest_log = outdir / "wstest.log"
    started = time.monotonic()

    spec_path = outdir / "spec.json"
    spec = {
        "url": url,
        "outdir": str(outdir),
        "cases": cases,
        "exclude-cases": split_patterns(args.exclude),
        "exclude-agent-cases": {},
    }
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")

    if not args.quiet:
        print(
            f"wstest fuzzingserver: cases {','.join(cases)}"
            + (f" excluding {args.exclude}" if args.exclude else "")
            + f" on {url}",
            file=sys.stderr,
            flush=True,
        )
    fuzzer = start_fuzzingserver(wstest, spec_path, wstest_log)
    try:
        wait_for_port(HOST, port, fuzzer, args.startup_timeout, wstest_log)
        planned = WstestProgress.from_log(wstest_log.read_text(errors="replace"))
        if planned.planned_count == 0:
            raise HarnessError("no Autobahn case matches the --cases/--exclude patterns")
        if not args.quiet:
            print(f"client: {shlex.join(argv)}", file=sys.stderr, flush=True)
        progress = run_client_driver(
            argv,
            client_log,
            fuzzer,
            wstest_log,
            planned.planned,
            args.timeout,
            args.quiet,
        )
    finally:
        stop_process(fuzzer)

    client_problem: str | None = None
    if progress.errors:
        shown = "; ".join(
            f"{case_name(n, planned.planned)}: {msg}" for n, msg in progress.errors[:10]
        )
        more = len(progress.errors) - 10
        client_problem = (
            f"the client driver could not finish {len(progress.errors)} case(s): {shown}"
            + (f"; and {more} more (see {client_log})" if more > 0 else "")
        )
    results = load_results(outdir, agent)
    if not results and not planned.planned:
        raise HarnessError(
            f"wstest reported no results; see {wstest_log} and {client_log}:\n{tail(client_log)}"
        )
    summary = build_summary(
        results, planned.planned, outdir, time.monotonic() - started, client_problem
    )
    print_summary(summary, args.max_details, "autobahn client", "client problem")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(summary, mode="client"), indent=2) + "\n")
    return EXIT_OK if summary["ok"] else EXIT_FAILED


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run Autobahn|Testsuite (fuzzingclient) against a WebSocket echo server, "
        "or with --client its fuzzingserver against ripple's client.",
    )
    parser.add_argument(
        "--client",
        action="store_true",
        help="test the client: run wstest -m fuzzingserver and drive --client-cmd against it",
    )
    parser.add_argument(
        "--cases",
        default=DEFAULT_CASES,
        help=f"comma-separated case patterns (default: {DEFAULT_CASES!r})",
    )
    parser.add_argument("--exclude", default="", help="comma-separated case patterns to skip")
    parser.add_argument(
        "--server-cmd",
        default=DEFAULT_SERVER_CMD,
        help="server command; {port} and {python} are substituted "
        f"(default: {DEFAULT_SERVER_CMD!r})",
    )
    parser.add_argument(
        "--client-cmd",
        default=DEFAULT_CLIENT_CMD,
        help="with --client, the client driver command; {python}, {driver} (client_driver.py), "
        "{url}, {agent} and {case_timeout} are substituted "
        f"(default: {DEFAULT_CLIENT_CMD!r})",
    )
    parser.add_argument(
        "--case-timeout",
        type=float,
        default=120.0,
        help="with --client, seconds the driver lets one case run before aborting its "
        "connection (default: 120)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1200.0,
        help="limit in seconds for the whole wstest run (or client driver run with "
        "--client) (default: 1200)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the server to accept connections (default: 30)",
    )
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the summary as JSON")
    parser.add_argument(
        "--wstest",
        type=Path,
        default=Path(os.environ.get("RIPPLE_WSTEST", DEFAULT_WSTEST)),
        help=f"wstest executable (default: $RIPPLE_WSTEST or {DEFAULT_WSTEST})",
    )
    parser.add_argument(
        "--reports-dir",
        type=Path,
        default=None,
        help=f"where wstest writes its reports (default: {DEFAULT_REPORTS_DIR}, "
        f"or {DEFAULT_CLIENT_REPORTS_DIR} with --client)",
    )
    parser.add_argument(
        "--agent",
        default=None,
        help=f"agent name used in the reports (default: {DEFAULT_SERVER_AGENT}, "
        f"or {DEFAULT_CLIENT_AGENT} with --client)",
    )
    parser.add_argument(
        "--max-details",
        type=int,
        default=40,
        help="print report details for at most this many failing cases (default: 40)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    wstest: Path = args.wstest
    if not (wstest.is_file() and os.access(wstest, os.X_OK)):
        raise HarnessError(
            f"wstest not found at {wstest}; run conformance/setup.sh (needs Python 2.7)"
        )
    cases = split_patterns(args.cases)
    if not cases:
        raise HarnessError("--cases selects nothing")
    if args.client:
        return run_client(args, wstest, cases)
    agent = clean_agent_name(args.agent or DEFAULT_SERVER_AGENT)
    outdir: Path = (args.reports_dir or DEFAULT_REPORTS_DIR).resolve()
    clean_reports_dir(outdir, agent)

    port = free_port()
    argv = server_argv(args.server_cmd, port, sys.executable)
    server_log = outdir / "server.log"
    wstest_log = outdir / "wstest.log"
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="ripple-autobahn-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec = {
            "outdir": str(outdir),
            "servers": [{"agent": agent, "url": f"ws://{HOST}:{port}"}],
            "cases": cases,
            "exclude-cases": split_patterns(args.exclude),
            "exclude-agent-cases": {},
        }
        spec_text = json.dumps(spec, indent=2) + "\n"
        spec_path.write_text(spec_text)
        (outdir / "spec.json").write_text(spec_text)

        if not args.quiet:
            print(f"server: {shlex.join(argv)}", file=sys.stderr, flush=True)
        try:
            server = spawn_logged(argv, server_log, dict(os.environ, PYTHONUNBUFFERED="1"))
        except OSError as exc:
            raise HarnessError(f"cannot start server {argv[0]!r}: {exc}") from exc
        server_problem: str | None = None
        try:
            wait_for_port(HOST, port, server, args.startup_timeout, server_log)
            if not args.quiet:
                print(
                    f"wstest: cases {','.join(cases)}"
                    + (f" excluding {args.exclude}" if args.exclude else "")
                    + f" against ws://{HOST}:{port}",
                    file=sys.stderr,
                    flush=True,
                )
            progress = run_wstest(wstest, spec_path, wstest_log, args.timeout, args.quiet)
            rc = server.poll()
            if rc is not None:
                server_problem = f"server exited with status {rc} during the run"
        finally:
            stop_process(server)

    results = load_results(outdir, agent)
    if not results and not progress.planned:
        raise HarnessError(
            f"wstest reported no results; see {wstest_log} and {server_log}:\n{tail(server_log)}"
        )
    summary = build_summary(
        results, progress.planned, outdir, time.monotonic() - started, server_problem
    )
    print_summary(summary, args.max_details)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return EXIT_OK if summary["ok"] else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except HarnessError as exc:
        print(f"conformance: ERROR: {exc}", file=sys.stderr)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"ok": False, "error": str(exc)}, indent=2) + "\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
