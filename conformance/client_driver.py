#!/usr/bin/env python3
"""Drive ripple's client through an Autobahn|Testsuite fuzzing server.

``conformance/run.py --client`` starts ``wstest -m fuzzingserver`` and runs
this script against it:

1. ``/getCaseCount`` tells how many cases the server will run;
2. for each case N, ``/runCase?case=N&agent=AGENT`` is opened and every
   message is echoed back (text as text, binary as binary) until the
   connection closes;
3. ``/updateReports?agent=AGENT`` makes the server write its reports.

One line per case goes to stdout.  Exit status: 0 when every case was
driven (whatever the suite thinks of it), 2 when the run could not be
carried out (no case count, or the report update failed).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ripple import ClientConnection, ConnectionClosed, ConnectionClosedOK, connect

# Section 9 sends messages of up to 16 MiB.
MAX_SIZE = 2**25
EXIT_OK = 0
EXIT_ERROR = 2


@dataclass
class CaseOutcome:
    number: int
    messages: int = 0
    error: str | None = None
    close_code: int | None = None
    close_reason: str = ""
    closed_ok: bool | None = None
    # Seconds from the end of recv() (close frame received or connection
    # lost) until the TCP connection was closed.
    tcp_close_wait: float | None = None
    elapsed: float = 0.0

    def describe(self, total: int) -> str:
        text = f"case {self.number}/{total}: "
        if self.error is not None:
            text += f"ERROR {self.error}"
        else:
            kind = "OK" if self.closed_ok else "error"
            text += f"closed ({kind}) code={self.close_code}"
            if self.close_reason:
                text += f" reason={self.close_reason!r}"
        text += f", {self.messages} message(s) echoed"
        if self.tcp_close_wait is not None:
            text += f", TCP closed {self.tcp_close_wait:.3f}s after the close"
        return text + f", {self.elapsed:.3f}s"


def open_connection(uri: str, close_timeout: float) -> connect:
    return connect(
        uri,
        max_size=MAX_SIZE,
        compression="deflate",  # sections 12-13 need an offer; others decline it
        # No keepalive pings: the suite would log them as unexpected frames.
        ping_interval=None,
        close_timeout=close_timeout,
        open_timeout=30,
        user_agent_header="ripple conformance driver",
    )


def abort(ws: ClientConnection | None) -> None:
    if ws is not None and ws.transport is not None and not ws.closed:
        ws.transport.abort()


async def get_case_count(base: str, close_timeout: float) -> int:
    ws = await open_connection(f"{base}/getCaseCount", close_timeout)
    try:
        message = await ws.recv()
    finally:
        await ws.close()
    return int(message)


async def echo_case(ws: ClientConnection, outcome: CaseOutcome) -> None:
    try:
        while True:
            message = await ws.recv()
            await ws.send(message)
            outcome.messages += 1
    except ConnectionClosed as exc:
        outcome.close_code = exc.code
        outcome.close_reason = exc.reason
        outcome.closed_ok = isinstance(exc, ConnectionClosedOK)
    closing = time.monotonic()
    # §7.1.1: the server closes TCP first; the client waits for that (at
    # most close_timeout) before closing it itself.
    await ws.wait_closed()
    outcome.tcp_close_wait = time.monotonic() - closing


async def run_case(
    base: str, agent: str, number: int, case_timeout: float, close_timeout: float
) -> CaseOutcome:
    outcome = CaseOutcome(number)
    opened: list[ClientConnection] = []
    uri = f"{base}/runCase?case={number}&agent={agent}"

    async def body() -> None:
        ws = await open_connection(uri, close_timeout)
        opened.append(ws)
        await echo_case(ws, outcome)

    start = time.monotonic()
    try:
        await asyncio.wait_for(body(), case_timeout)
    except asyncio.TimeoutError:
        outcome.error = f"timed out after {time.monotonic() - start:.1f}s; connection aborted"
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        for ws in opened:
            abort(ws)
        outcome.elapsed = time.monotonic() - start
    return outcome


async def update_reports(base: str, agent: str, close_timeout: float) -> None:
    ws = await open_connection(f"{base}/updateReports?agent={agent}", close_timeout)
    try:
        # The server writes the reports, then closes.
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass
    await ws.wait_closed()


async def drive(args: argparse.Namespace) -> int:
    base: str = args.url.rstrip("/")
    try:
        count = await get_case_count(base, args.close_timeout)
    except Exception as exc:
        print(f"cannot get the case count from {base}: {exc!r}", flush=True)
        return EXIT_ERROR
    print(f"will run {count} cases against {base} as agent {args.agent}", flush=True)
    errors = 0
    for number in range(1, count + 1):
        outcome = await run_case(base, args.agent, number, args.case_timeout, args.close_timeout)
        errors += outcome.error is not None
        print(outcome.describe(count), flush=True)
    try:
        await asyncio.wait_for(update_reports(base, args.agent, args.close_timeout), 300)
    except Exception as exc:
        print(f"updating the reports failed: {exc!r}", flush=True)
        return EXIT_ERROR
    print(f"done: {count} cases, {errors} driver error(s); reports updated", flush=True)
    return EXIT_OK


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--url", required=True, help="the fuzzing server's base URL, e.g. ws://127.0.0.1:9001"
    )
    parser.add_argument("--agent", default="ripple", help="agent name in the reports")
    parser.add_argument(
        "--case-timeout",
        type=float,
        default=120.0,
        help="seconds one case may take before its connection is aborted (default: 120)",
    )
    parser.add_argument(
        "--close-timeout",
        type=float,
        default=10.0,
        help="the client's close_timeout (default: 10, ripple's default)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(drive(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
