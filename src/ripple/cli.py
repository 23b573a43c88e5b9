"""The `ripple` command: `echo`, `chat`, `bot`, `connect` and `bench`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from ._stop import stop_on_signals
from .server import ServerConnection, serve, unix_serve

__all__ = ["main"]


async def echo_handler(websocket: ServerConnection) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in websocket:
        await websocket.send(message)


async def run_echo(
    host: str, port: int, unix: str | None, max_size: int | None, compression: str | None
) -> None:
    loop = asyncio.get_running_loop()
    stop, _ = stop_on_signals(loop)  # handlers stay until the process exits
    if unix:
        server = await unix_serve(echo_handler, unix, max_size=max_size, compression=compression)
        print(f"ripple echo on unix socket {unix}", flush=True)
    else:
        server = await serve(echo_handler, host, port, max_size=max_size, compression=compression)
        bound = next(iter(server.sockets)).getsockname()
        shown = f"[{host}]" if ":" in host else host
        print(f"ripple echo on ws://{shown}:{bound[1]}/", flush=True)
    async with server:
        await stop


def bench_script() -> Path | None:
    """bench/run.py of the clone this ripple runs from, if there is one."""
    script = Path(__file__).resolve().parents[2] / "bench" / "run.py"
    return script if script.is_file() else None


def run_bench(argv: Sequence[str], script: Path | None) -> int:
    """Run ``main(argv)`` of the benchmarks' run.py; 2 if there's none."""
    if script is None:
        print(
            "ripple bench: the benchmarks live in the repository's bench/ directory, which "
            "isn't installed with the package; run `ripple bench` (or "
            "`python bench/run.py`) from a clone of the repository, installed with "
            "`pip install -e '.[test]'`",
            file=sys.stderr,
        )
        return 2
    # As `python bench/run.py` would: its directory first on sys.path.
    sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location("ripple_bench_run", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    status = module.main(list(argv))
    return status if isinstance(status, int) else 0


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: no limit), got {text}")
    return value


def _verbose(sub: argparse.ArgumentParser) -> None:
    # SUPPRESS: the subcommand's default must not reset a -v given before it.
    sub.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )


def _parser() -> argparse.ArgumentParser:
    from .chat.publish import PUBLISH_STRATEGIES
    from .chat.server import ChatConfig

    defaults = ChatConfig()
    # -v works before or after the command: `ripple -v echo`, `ripple echo -v`.
    parser = argparse.ArgumentParser(prog="ripple", description="ripple WebSocket tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    echo = sub.add_parser("echo", help="run a WebSocket echo server")
    _verbose(echo)
    echo.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    echo.add_argument("--port", type=int, default=8765, help="TCP port (8765; 0 picks one)")
    echo.add_argument("--unix", metavar="PATH", help="listen on a unix socket instead")
    echo.add_argument(
        "--max-size",
        type=int,
        default=2**25,
        help="largest message in bytes (32 MiB; 0 for no limit)",
    )
    echo.add_argument(
        "--no-compression", action="store_true", help="don't accept permessage-deflate"
    )

    chat = sub.add_parser(
        "chat",
        help="run the chat: the page at /, the WebSocket at /ws",
        description="Run the chat service: the page at /, its WebSocket at /ws, a health "
        "check at /healthz, all on one port. SIGINT or SIGTERM closes every client "
        "with 1001 and exits 0.",
    )
    _verbose(chat)
    chat.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    chat.add_argument("--port", type=int, default=8765, help="TCP port (8765; 0 picks one)")
    chat.add_argument(
        "--publish",
        choices=PUBLISH_STRATEGIES,
        default=defaults.publish,
        help=f"how a message reaches every client ({defaults.publish})",
    )
    chat.add_argument(
        "--history",
        type=_at_least(0),
        default=defaults.history,
        help=f"messages a newcomer gets ({defaults.history})",
    )
    chat.add_argument(
        "--max-bytes",
        type=_at_least(64),
        default=defaults.max_bytes,
        help=f"largest client message, in bytes ({defaults.max_bytes})",
    )
    chat.add_argument(
        "--rate",
        type=_rate,
        default=defaults.rate,
        help=f"messages per second a client may send on average ({defaults.rate:g}; 0: no limit)",
    )
    chat.add_argument(
        "--burst",
        type=_at_least(1),
        default=defaults.burst,
        help=f"messages a client may send at once ({defaults.burst})",
    )
    chat.add_argument(
        "--send-timeout",
        type=_positive,
        default=defaults.send_timeout,
        help="seconds a send may wait for a slow client before it's dropped, with "
        f"--publish sequential or gather ({defaults.send_timeout:g})",
    )
    chat.add_argument(
        "--max-backlog",
        type=_at_least(1),
        default=defaults.max_backlog,
        help="characters (tasks) or bytes (broadcast) a client may fall behind by "
        f"before it's dropped ({defaults.max_backlog})",
    )
    chat.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also let pages from ORIGIN (scheme://host[:port]) open /ws; repeatable",
    )
    chat.add_argument(
        "--redis",
        metavar="URL",
        help="share the room through Redis (redis://host:port/db): ids, history and "
        "presence live there, so workers and other servers on it are one chat; needs "
        "pip install 'ripple[redis]' (default: one process, in memory)",
    )
    chat.add_argument(
        "--workers",
        type=_at_least(1),
        default=1,
        help="processes serving the port (SO_REUSEPORT); above 1 needs --redis (1)",
    )
    chat.add_argument(
        "--retain",
        type=_at_least(1),
        default=defaults.retain,
        help=f"events the room keeps for clients that reconnect and resume ({defaults.retain})",
    )
    chat.add_argument(
        "--presence-ttl",
        type=_positive,
        default=defaults.presence_ttl,
        metavar="SECONDS",
        help="how long users of a process that died stay listed before others see them "
        f"leave ({defaults.presence_ttl:g})",
    )
    # A worker of `--workers N`: bind with SO_REUSEPORT.
    chat.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    bot = sub.add_parser(
        "bot",
        help="run the course's bot against a chat",
        description='Join a ripple chat, say "Ask me a question." every INTERVAL seconds '
        'and answer "No." to every message with a "?" (but its own). Reconnects with '
        "backoff. URL is the chat's WebSocket (ws://host:port/ws) or its page (http://...).",
    )
    _verbose(bot)
    bot.add_argument("url", metavar="URL")
    bot.add_argument("--name", default="bot", help="the bot's name (bot)")
    bot.add_argument(
        "--interval",
        type=_positive,
        default=10.0,
        help="seconds between questions (10)",
    )
    bot.add_argument("--ask", default="Ask me a question.", help="what it says every interval")
    bot.add_argument("--answer", default="No.", help="what it answers to questions")

    conn = sub.add_parser(
        "connect",
        help="an interactive client for any WebSocket server",
        description="Send each line of standard input as a text message and print every "
        "message received after '< '. Ctrl-D (end of input) closes the connection.",
    )
    _verbose(conn)
    conn.add_argument("url", metavar="URL", help="ws:// or wss:// URL")

    sub.add_parser(
        "bench",
        help="run the benchmarks (from a clone: bench/run.py)",
        add_help=False,
        description="Runs bench/run.py with the arguments that follow.",
    )
    return parser


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _run(main: Coroutine[Any, Any, int | None]) -> int:
    """Run ``main``; its status (0 for None, or a Ctrl-C before handlers are set)."""
    try:
        return asyncio.run(main) or 0
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `ripple` command."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    # `ripple [-v] bench ARGS...`: every ARG goes to bench/run.py as is.
    head = 0
    while head < len(args_in) and args_in[head] in ("-v", "--verbose"):
        head += 1
    if head < len(args_in) and args_in[head] == "bench":
        sys.exit(run_bench(args_in[head + 1 :], bench_script()))

    parser = _parser()
    args = parser.parse_args(args_in)
    _logging(args.verbose)
    if args.command == "echo":
        _run(
            run_echo(
                args.host,
                args.port,
                args.unix,
                args.max_size or None,
                None if args.no_compression else "deflate",
            )
        )
    elif args.command == "chat":
        from .chat.server import ChatConfig, run_chat

        try:
            config = ChatConfig(
                publish=args.publish,
                history=args.history,
                max_bytes=args.max_bytes,
                rate=args.rate,
                burst=args.burst,
                send_timeout=args.send_timeout,
                max_backlog=args.max_backlog,
                allow_origins=tuple(args.allow_origin),
                hub=args.redis or "memory",
                retain=args.retain,
                presence_ttl=args.presence_ttl,
            )
        except ValueError as exc:
            parser.error(str(exc))
        if args.workers > 1 and args.redis is None:
            parser.error(
                f"--workers {args.workers}: workers share the chat through Redis; pass "
                "--redis redis://host:port/0 (the memory hub lives in one process)"
            )
        if args.redis is not None:
            try:
                import redis  # noqa: F401
            except ImportError:
                parser.error("--redis needs redis-py: pip install 'ripple[redis]'")
        if args.workers > 1:
            from .chat.workers import run_workers

            sys.exit(_run(run_workers(args_in, args.host, args.port, args.workers)))
        _run(run_chat(args.host, args.port, config, reuse_port=args.reuse_port))
    elif args.command == "bot":
        sys.exit(_bot(args))
    elif args.command == "connect":
        from .interactive import run_connect

        sys.exit(_run(run_connect(args.url)))
    sys.exit(0)


def _bot(args: argparse.Namespace) -> int:
    from .chat.bot import BotError, run_bot
    from .exceptions import InvalidURI

    async def bot_main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, task.cancel)
        try:
            await run_bot(
                args.url,
                name=args.name,
                interval=args.interval,
                ask=args.ask,
                answer=args.answer,
            )
        except asyncio.CancelledError:
            return 0  # SIGINT or SIGTERM: the connection was closed on the way out
        except InvalidURI as exc:
            print(f"ripple bot: {exc}", file=sys.stderr)
            return 2
        except BotError as exc:
            print(f"ripple bot: {exc}", file=sys.stderr)
            return 1
        return 0

    return _run(bot_main())
