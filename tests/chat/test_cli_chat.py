"""`python -m ripple chat` as a real process: the URL it prints, graceful shutdown,
flag checks; and the thin `ripple bench`."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path

import pytest

import ripple
import ripple.cli
from aio_helpers import read_http_response, within
from ripple.chat import PUBLISH_STRATEGIES

from .helpers import Client, start_chat_process

pytestmark = pytest.mark.timeout(90)


async def test_chat_prints_its_url_and_serves_page_health_and_ws() -> None:
    proc, page_url = await start_chat_process()
    try:
        match = re.fullmatch(
            r"ripple chat on (http://127\.0\.0\.1:(\d+)/) "
            r"\(WebSocket (ws://127\.0\.0\.1:\d+/ws), publish: broadcast\)",
            proc.first_line,
        )
        assert match is not None, proc.first_line
        assert match.group(1) == page_url
        port = int(match.group(2))
        for path, needle in [("/", b"<!doctype html>"), ("/healthz", b"ok\n")]:
            reader, writer = await within(asyncio.open_connection("127.0.0.1", port))
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            status, _, body = await within(read_http_response(reader))
            writer.close()
            assert status == 200 and needle in body, (path, status, body[:100])
        client = Client(await within(ripple.connect(match.group(3))))
        welcome = await client.join("cli")
        assert welcome["you"]["name"] == "cli"
        await client.close()
        assert await proc.stop() == 0
    finally:
        await proc.kill()


@pytest.mark.parametrize(
    ("publish", "sig"),
    [(p, signal.SIGTERM) for p in PUBLISH_STRATEGIES] + [("broadcast", signal.SIGINT)],
    ids=[f"{p}-SIGTERM" for p in PUBLISH_STRATEGIES] + ["broadcast-SIGINT"],
)
async def test_signal_closes_every_client_with_1001_and_exits_0(
    publish: str, sig: signal.Signals
) -> None:
    proc, url = await start_chat_process("--publish", publish)
    ws_url = url.replace("http://", "ws://") + "ws"
    try:
        clients = [Client(await within(ripple.connect(ws_url))) for _ in range(4)]
        for i, client in enumerate(clients[:3]):
            await client.join(f"user{i}")  # the fourth never joins
        await clients[0].say("before the end")
        for client in clients[:3]:
            await client.until("message", text="before the end")

        assert await proc.stop(sig) == 0
        for client in clients:
            # Whatever was still on its way, then the close.
            with pytest.raises(ripple.ConnectionClosedOK) as info:
                while True:
                    await within(client.ws.recv())
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1001
            assert info.value.rcvd.reason  # says why
        err = await proc.stderr()
        assert "Traceback" not in err and " ERROR " not in err, err
    finally:
        await proc.kill()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--publish", "pigeon"], "invalid choice"),
        (["--rate", "-1"], "must be >= 0"),
        (["--burst", "0"], "must be >= 1"),
        (["--history", "-5"], "must be >= 0"),
        (["--max-bytes", "10"], "must be >= 64"),
        (["--send-timeout", "0"], "must be > 0"),
        (["--allow-origin", "https://example.com/"], "isn't an origin"),
    ],
)
def test_bad_flags_exit_2(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        ripple.cli.main(["chat", "--port", "0", *args])
    assert info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_chat_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        ripple.cli.main(["chat", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--publish", "--history", "--rate", "--burst", "--max-bytes", "--allow-origin"):
        assert flag in out
    assert "sequential,gather,tasks,broadcast" in out


# -- ripple bench ----------------------------------------------------------------------


def test_bench_runs_main_of_the_clones_run_py(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "helper.py").write_text("VALUE = 'imported from bench/'\n")
    (bench / "run.py").write_text(
        "import json, pathlib, helper\n"
        "def main(argv):\n"
        "    pathlib.Path(__file__).with_name('seen.json').write_text(\n"
        "        json.dumps([argv, helper.VALUE]))\n"
        "    return 3\n"
    )
    monkeypatch.setattr(ripple.cli, "bench_script", lambda: bench / "run.py")
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    with pytest.raises(SystemExit) as info:
        ripple.cli.main(["-v", "bench", "--help", "-n", "5"])
    assert info.value.code == 3
    assert json.loads((bench / "seen.json").read_text()) == [
        ["--help", "-n", "5"],
        "imported from bench/",
    ]


def test_bench_without_a_clone_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ripple.cli, "bench_script", lambda: None)
    with pytest.raises(SystemExit) as info:
        ripple.cli.main(["bench"])
    assert info.value.code == 2
    assert "clone" in capsys.readouterr().err


def test_bench_script_is_found_next_to_the_source() -> None:
    # In this checkout ripple runs from src/, so bench/ is the repository's.
    repo = Path(__file__).resolve().parents[2]
    expected = repo / "bench" / "run.py"
    assert ripple.cli.bench_script() == (expected if expected.is_file() else None)
