"""The node peer's availability rule: skip locally, fail under CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import peers


@pytest.fixture
def ws_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(peers, "NODE_WS", tmp_path / "node_modules" / "ws" / "package.json")


@pytest.mark.usefixtures("ws_missing")
def test_missing_ws_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="run npm ci in tests/interop/node"):
        peers.require_node()


@pytest.mark.usefixtures("ws_missing")
def test_missing_ws_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="run npm ci in tests/interop/node"):
        peers.require_node()


def test_missing_node_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="node is not on PATH"):
        peers.require_node()
