"""Autobahn|Testsuite against ``ripple echo`` and ripple's client: sections 1-10, 12, 13.

Runs ``conformance/run.py`` (and ``conformance/run.py --client``) in a
subprocess; see conformance/README.md.
Without the Python 2.7 environment (``conformance/setup.sh``) the test is
skipped locally but fails when CI=true.  Set RIPPLE_AUTOBAHN_CASES (e.g.
"1.*,7.*") to run fewer cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "conformance" / "run.py"
WSTEST = ROOT / "conformance" / ".venv27" / "bin" / "wstest"
DEFAULT_CASES = ",".join(f"{n}.*" for n in range(1, 11))
# permessage-deflate (RFC 7692): every case of sections 12 and 13 under CI
# (about 15 minutes against the server, most of it wstest's own time); a
# sample of each subsection locally.
COMPRESSION_CASES = "12.*,13.*"
COMPRESSION_SAMPLE = (
    "12.1.1,12.2.3,12.3.5,12.4.7,12.5.9,13.1.2,13.2.4,13.3.6,13.4.8,13.5.10,13.6.12,13.7.14"
)
# Bound for wstest itself; the subprocess gets a little more for start-up and
# shutdown.
HARNESS_TIMEOUT = 3000


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _run_harness(tmp_path: Path, *extra: str, cases: str = DEFAULT_CASES) -> None:
    """Run conformance/run.py (plus ``extra`` options) and assert it passed."""
    if not os.access(WSTEST, os.X_OK):
        reason = f"Autobahn|Testsuite not installed ({WSTEST} missing): run conformance/setup.sh"
        if _in_ci():
            pytest.fail(f"{reason} (CI=true, so this is an error, not a skip)", pytrace=False)
        pytest.skip(reason)

    cases = os.environ.get("RIPPLE_AUTOBAHN_CASES", "").strip() or cases
    cmd = [
        sys.executable,
        str(HARNESS),
        *extra,
        "--cases",
        cases,
        "--timeout",
        str(HARNESS_TIMEOUT),
        "--json",
        str(tmp_path / "autobahn-summary.json"),
        "--quiet",
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=HARNESS_TIMEOUT + 120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"conformance/run.py did not finish: {exc}", pytrace=False)

    summary = [line for line in proc.stdout.splitlines() if line.startswith("autobahn")]
    print("\n".join(summary) or proc.stdout)
    status = proc.returncode
    direction = " (client)" if "--client" in extra else ""
    assert status == 0, (
        f"Autobahn|Testsuite{direction} ({cases}) failed, exit status {status}\n"
        f"{proc.stdout}\n{proc.stderr[-4000:]}"
    )


@pytest.mark.conformance
def test_autobahn_sections_1_to_10(tmp_path: Path) -> None:
    _run_harness(tmp_path)


@pytest.mark.conformance
def test_autobahn_client_sections_1_to_10(tmp_path: Path) -> None:
    """The other direction: wstest's fuzzing server against ripple's client."""
    _run_harness(tmp_path, "--client")


def _compression_cases() -> str:
    return COMPRESSION_CASES if _in_ci() else COMPRESSION_SAMPLE


@pytest.mark.conformance
def test_autobahn_compression_sections_12_13(tmp_path: Path) -> None:
    """permessage-deflate against ``ripple echo`` (compression on by default)."""
    _run_harness(tmp_path, cases=_compression_cases())


@pytest.mark.conformance
def test_autobahn_client_compression_sections_12_13(tmp_path: Path) -> None:
    """permessage-deflate: wstest's fuzzing server against ripple's client.

    A sample of every subsection, also under CI: the full client sections take
    about half an hour, nearly all of it wstest's (`make conformance-client`
    with ``--cases "12.*,13.*"`` runs them).
    """
    _run_harness(tmp_path, "--client", cases=COMPRESSION_SAMPLE)
