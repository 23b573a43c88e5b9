"""The fuzz targets (fuzz/harnesses.py) in make test, without atheris.

- every target runs on its checked-in seed corpus, and on every saved crash
  input (fuzz/crashes/, once fixed): the harnesses can't rot, and a fixed
  crash stays fixed;
- hypothesis drives the frames target with permessage-deflate negotiated,
  on both sides: arbitrary bytes through the deflate receive path raise
  nothing, and every invariant the harness checks holds;
- the harnesses do report a bug: a planted exception escapes them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ripple.protocol import state

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_harnesses", FUZZ / "harnesses.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harnesses = _load()
TARGETS: dict[str, Callable[[bytes], None]] = harnesses.TARGETS


def _inputs() -> list[tuple[str, Path]]:
    found = [
        (target, path)
        for target in TARGETS
        for path in sorted((FUZZ / "corpus" / target).iterdir())
    ]
    crashes = FUZZ / "crashes"
    if crashes.is_dir():
        for path in sorted(crashes.iterdir()):
            target = path.name.split("-", 1)[0]
            if target in TARGETS:
                found.append((target, path))
    return found


def test_every_target_has_seeds() -> None:
    for target in TARGETS:
        assert len(list((FUZZ / "corpus" / target).iterdir())) >= 5, target


@pytest.mark.parametrize(
    ("target", "path"), _inputs(), ids=[f"{t}/{p.name}" for t, p in _inputs()]
)
def test_target_on_saved_input(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())


# Config byte of the frames target: bit 0 side, bit 1 deflate, bits 2-3
# max_size, bit 4 structured input, bit 5 defer_failure, bits 6-7 deflate
# parameters. Always with deflate here.
deflate_config = st.integers(0, 255).map(lambda c: c | 0x02)


@st.composite
def compressed_frames(draw: st.DrawFn) -> bytes:
    """Structured-mode bodies whose payloads are often real deflate data."""
    import zlib

    body = bytearray()
    for _ in range(draw(st.integers(1, 5))):
        b0 = draw(st.sampled_from([0xC1, 0xC2, 0x41, 0x42, 0x00, 0x80, 0x40, 0x89, 0x88]))
        raw = draw(st.binary(max_size=200))
        compressor = zlib.compressobj(6, zlib.DEFLATED, -draw(st.integers(9, 15)))
        payload = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if draw(st.booleans()):
            payload = payload[:-4]
        if draw(st.booleans()):
            payload = draw(st.binary(max_size=40))  # or garbage
        payload = payload[:255]
        body += bytes((b0, len(payload))) + payload
    return bytes(body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=deflate_config,
    chunk=st.integers(0, 255),
    body=st.binary(max_size=300) | compressed_frames(),
)
def test_deflate_receive_path_under_arbitrary_bytes(config: int, chunk: int, body: bytes) -> None:
    if body[:1] in (b"\xc1", b"\xc2", b"\x41", b"\x42") and len(body) > 2:
        config |= 0x10  # compressed_frames() output is structured input
    harnesses.frames(bytes((config, chunk)) + body)


@pytest.mark.parametrize(
    ("target", "seed"),
    [("frames", "structured-compressed-s"), ("frames", "structured-fragments-c")],
)
def test_frames_harness_reports_a_bug(
    target: str, seed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise IndexError("planted")

    monkeypatch.setattr(state.Protocol, "_frame", broken)
    with pytest.raises(IndexError, match="planted"):
        TARGETS[target]((FUZZ / "corpus" / target / seed).read_bytes())


def test_http_harness_reports_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harnesses, "server_accept", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        TARGETS["http"]((FUZZ / "corpus" / "http" / "request").read_bytes())
