"""Tests for WebSocket masking (RFC 6455 section 5.3), pure Python and C."""

from __future__ import annotations

import array
import ast
import importlib
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ripple.protocol import masking

MaskFn = Callable[..., bytes]

try:
    _C_APPLY_MASK: MaskFn | None = importlib.import_module("ripple._speedups").apply_mask
except ImportError:
    _C_APPLY_MASK = None

# The CI image has a compiler, so a missing extension there is a build bug, not a skip.
_REQUIRE_C = os.environ.get("CI") == "true"

IMPLS = ["python", "c"]

RFC_MASK = bytes.fromhex("37fa213d")


def c_apply_mask() -> MaskFn:
    if _C_APPLY_MASK is None:
        if _REQUIRE_C:
            pytest.fail("ripple._speedups is not built, but CI=true requires the C extension")
        pytest.skip("ripple._speedups (C extension) is not built")
    return _C_APPLY_MASK


def get_impl(name: str) -> MaskFn:
    return masking.apply_mask_python if name == "python" else c_apply_mask()


def reference(data: bytes, mask: bytes) -> bytes:
    """Naive byte-by-byte masking straight from RFC 6455 section 5.3."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


# --- known vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("impl_name", IMPLS)
def test_rfc6455_example(impl_name: str) -> None:
    # RFC 6455 section 5.7: a masked "Hello" is 0x81 0x85 37 fa 21 3d 7f 9f 4d 51 58.
    apply = get_impl(impl_name)
    assert apply(b"Hello", RFC_MASK) == bytes.fromhex("7f9f4d5158")
    assert apply(bytes.fromhex("7f9f4d5158"), RFC_MASK) == b"Hello"


@pytest.mark.parametrize("impl_name", IMPLS)
def test_known_vectors(impl_name: str) -> None:
    apply = get_impl(impl_name)
    assert apply(b"\x00" * 9, b"\x01\x02\x03\x04") == bytes.fromhex("010203040102030401")
    assert apply(b"\xff" * 5, b"\x0f\xf0\x00\xff") == bytes.fromhex("f00fff00f0")
    assert apply(b"abcd", b"\x00\x00\x00\x00") == b"abcd"


@pytest.mark.parametrize("impl_name", IMPLS)
def test_empty_input(impl_name: str) -> None:
    apply = get_impl(impl_name)
    for empty in (b"", bytearray(), memoryview(b"")):
        result = apply(empty, RFC_MASK)
        assert result == b""
        assert type(result) is bytes


@pytest.mark.parametrize("impl_name", IMPLS)
def test_every_small_length_matches_reference(impl_name: str) -> None:
    apply = get_impl(impl_name)
    mask = bytes.fromhex("a1b2c3d4")
    for length in range(41):
        data = random_bytes(length, seed=length)
        assert apply(data, mask) == reference(data, mask), length


@pytest.mark.parametrize("impl_name", IMPLS)
@pytest.mark.parametrize(
    "size",
    [
        # Around the pure-Python chunk boundary and the C GIL-release threshold.
        masking._CHUNK - 1,
        masking._CHUNK,
        masking._CHUNK + 1,
        3 * masking._CHUNK + 7,
        64 * 1024 - 1,
        64 * 1024,
        64 * 1024 + 13,
    ],
)
def test_large_inputs_match_reference(impl_name: str, size: int) -> None:
    apply = get_impl(impl_name)
    data = random_bytes(size, seed=size)
    mask = bytes.fromhex("5ac3e10f")
    assert apply(data, mask) == reference(data, mask)


def test_one_mebibyte_c_matches_python() -> None:
    c_apply = c_apply_mask()
    data = random_bytes(1 << 20, seed=1)
    mask = bytes.fromhex("deadbeef")
    masked = c_apply(data, mask)
    assert masked == masking.apply_mask_python(data, mask)
    assert c_apply(masked, mask) == data


# --- input types ------------------------------------------------------------------------------


def _data_variants(raw: bytes) -> list[object]:
    return [
        raw,
        bytearray(raw),
        memoryview(raw),
        memoryview(bytearray(raw)),
        memoryview(b"xx" + raw + b"yy")[2:-2],
    ]


@pytest.mark.parametrize("impl_name", IMPLS)
@pytest.mark.parametrize("size", [0, 3, 4, 5, 37, 2 * masking._CHUNK + 3])
def test_bytes_like_data(impl_name: str, size: int) -> None:
    apply = get_impl(impl_name)
    raw = random_bytes(size, seed=size)
    expected = reference(raw, RFC_MASK)
    for data in _data_variants(raw):
        result = apply(data, RFC_MASK)
        assert type(result) is bytes
        assert result == expected, type(data)


@pytest.mark.parametrize("impl_name", IMPLS)
def test_bytes_like_mask(impl_name: str) -> None:
    apply = get_impl(impl_name)
    data = b"Hello"
    for mask in (RFC_MASK, bytearray(RFC_MASK), memoryview(RFC_MASK)):
        assert apply(data, mask) == bytes.fromhex("7f9f4d5158")


@pytest.mark.parametrize("impl_name", IMPLS)
def test_non_contiguous_and_wide_buffers(impl_name: str) -> None:
    apply = get_impl(impl_name)
    raw = random_bytes(2 * masking._CHUNK + 50, seed=7)
    strided = memoryview(raw)[::2]
    assert apply(strided, RFC_MASK) == reference(raw[::2], RFC_MASK)
    # Multi-byte items: masking works on the underlying bytes, not on items.
    wide = array.array("H", range(1000))
    assert apply(wide, RFC_MASK) == reference(wide.tobytes(), RFC_MASK)
    assert apply(memoryview(wide), RFC_MASK) == reference(wide.tobytes(), RFC_MASK)


@pytest.mark.parametrize("impl_name", IMPLS)
def test_input_is_not_modified(impl_name: str) -> None:
    apply = get_impl(impl_name)
    data = bytearray(b"payload that must stay intact")
    before = bytes(data)
    apply(data, RFC_MASK)
    apply(memoryview(data), RFC_MASK)
    assert data == before


@pytest.mark.parametrize("impl_name", IMPLS)
@pytest.mark.parametrize("bad", [b"", b"\x01", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05", b"x" * 8])
def test_bad_mask_length_raises(impl_name: str, bad: bytes) -> None:
    apply = get_impl(impl_name)
    for data in (b"", b"Hello"):
        with pytest.raises(ValueError, match="4 bytes"):
            apply(data, bad)
    with pytest.raises(ValueError, match="4 bytes"):
        apply(b"Hello", bytearray(bad))


@pytest.mark.parametrize("impl_name", IMPLS)
@pytest.mark.parametrize(
    ("data", "mask"),
    [
        ("text", RFC_MASK),
        ([1, 2, 3], RFC_MASK),
        (None, RFC_MASK),
        (b"abc", 1234),
        (b"abc", "abcd"),
    ],
)
def test_non_bytes_like_raises_type_error(impl_name: str, data: object, mask: object) -> None:
    apply = get_impl(impl_name)
    with pytest.raises(TypeError):
        apply(data, mask)


# --- properties -------------------------------------------------------------------------------

masks = st.binary(min_size=4, max_size=4)


@pytest.mark.parametrize("impl_name", IMPLS)
@given(data=st.binary(max_size=2000), mask=masks)
def test_mask_twice_is_identity(impl_name: str, data: bytes, mask: bytes) -> None:
    apply = get_impl(impl_name)
    assert apply(apply(data, mask), mask) == data


@given(data=st.binary(max_size=2000), mask=masks)
def test_python_matches_reference(data: bytes, mask: bytes) -> None:
    assert masking.apply_mask_python(data, mask) == reference(data, mask)


@given(data=st.binary(max_size=4000), mask=masks, offset=st.integers(0, 7))
def test_c_matches_python(data: bytes, mask: bytes, offset: int) -> None:
    c_apply = c_apply_mask()
    # Slicing a memoryview at an offset exercises unaligned buffers in the C loop.
    view = memoryview(bytes(offset) + data)[offset:]
    assert c_apply(view, mask) == masking.apply_mask_python(data, mask)


# --- dispatch ---------------------------------------------------------------------------------


def test_c_extension_is_built_in_ci() -> None:
    if _REQUIRE_C:
        assert _C_APPLY_MASK is not None, "CI=true but ripple._speedups is not importable"
    else:
        c_apply_mask()


def test_apply_mask_dispatch_matches_speedups_flag() -> None:
    assert isinstance(masking.SPEEDUPS, bool)
    if masking.SPEEDUPS:
        assert masking.apply_mask is _C_APPLY_MASK
    else:
        assert masking.apply_mask is masking.apply_mask_python
    expected = _C_APPLY_MASK is not None and os.environ.get("RIPPLE_NO_SPEEDUPS") != "1"
    assert masking.SPEEDUPS is expected


def _speedups_in_fresh_interpreter(no_speedups: str | None) -> str:
    env = dict(os.environ)
    env.pop("RIPPLE_NO_SPEEDUPS", None)
    if no_speedups is not None:
        env["RIPPLE_NO_SPEEDUPS"] = no_speedups
    # Make the ripple under test importable even if it is not installed.
    src = str(Path(masking.__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    code = (
        "from ripple.protocol import masking\n"
        "assert masking.apply_mask(b'Hello', bytes.fromhex('37fa213d')) == b'\\x7f\\x9fMQX'\n"
        "print(masking.SPEEDUPS)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_env_var_disables_speedups_in_fresh_interpreter() -> None:
    assert _speedups_in_fresh_interpreter("1") == "False"


def test_speedups_enabled_in_fresh_interpreter_when_built() -> None:
    c_apply_mask()
    assert _speedups_in_fresh_interpreter(None) == "True"
    # Only the exact value "1" opts out.
    assert _speedups_in_fresh_interpreter("0") == "True"


def test_masking_module_does_not_import_asyncio() -> None:
    tree = ast.parse(Path(masking.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "asyncio" not in imported
    assert "random" not in imported


# --- new_mask ---------------------------------------------------------------------------------


@pytest.fixture
def empty_pool() -> Iterator[None]:
    masking._pool.clear()
    yield
    # Never leave test-controlled keys behind for other tests.
    masking._pool.clear()


def test_new_mask_returns_four_bytes() -> None:
    for _ in range(10):
        key = masking.new_mask()
        assert type(key) is bytes
        assert len(key) == 4


def test_new_mask_values_differ() -> None:
    keys = [masking.new_mask() for _ in range(2000)]
    assert all(len(key) == 4 for key in keys)
    # 2000 draws from 2**32 values collide with probability ~5e-4; allow a little slack.
    assert len(set(keys)) > 1990


@pytest.mark.usefixtures("empty_pool")
def test_new_mask_refills_past_pool_size(monkeypatch: pytest.MonkeyPatch) -> None:
    real_urandom = os.urandom
    served: list[bytes] = []

    def recording_urandom(size: int) -> bytes:
        chunk = real_urandom(size)
        served.append(chunk)
        return chunk

    monkeypatch.setattr(os, "urandom", recording_urandom)
    per_pool = masking._POOL_SIZE // 4
    total = 2 * per_pool + 5
    keys = [masking.new_mask() for _ in range(total)]

    assert len(served) == 3
    assert all(len(chunk) == masking._POOL_SIZE for chunk in served)
    assert all(len(key) == 4 for key in keys)
    # Each 4-byte slice of the CSPRNG output is handed out once, in order, none skipped.
    assert b"".join(keys) == b"".join(served)[: 4 * total]
    assert len(set(keys)) > total - 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.usefixtures("empty_pool")
def test_forked_child_does_not_reuse_parent_pool() -> None:
    masking.new_mask()  # fill the pool in the parent
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        try:
            os.write(write_fd, masking.new_mask())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        child_key = pipe.read()
    os.waitpid(pid, 0)
    parent_key = masking.new_mask()
    assert len(child_key) == 4
    assert child_key != parent_key


# --- unmask_frame: the payload straight from the receive buffer ------------------------------


def get_unmask(name: str) -> MaskFn:
    if name == "python":
        return masking.unmask_frame_python
    c_apply_mask()  # fails under CI, skips locally, when the extension isn't built
    fn: MaskFn = importlib.import_module("ripple._speedups").unmask_frame
    return fn


@pytest.mark.parametrize("impl_name", IMPLS)
@pytest.mark.parametrize("kind", [bytes, bytearray])
@pytest.mark.parametrize("length", [0, 1, 5, 125, 126, 70000])
def test_unmask_frame_matches_reference(impl_name: str, kind: type, length: int) -> None:
    unmask = get_unmask(impl_name)
    payload = random_bytes(length, seed=length)
    key = bytes.fromhex("a1b2c3d4")
    # Some bytes before the key and after the payload, as in a receive buffer.
    buf = kind(b"\x82\xfe" + key + reference(payload, key) + b"next frame")
    assert unmask(buf, 2, length) == payload


@pytest.mark.parametrize("impl_name", IMPLS)
@pytest.mark.parametrize(("key_at", "length"), [(-1, 1), (2, 100), (20, 0), (0, -1), (13, 0)])
def test_unmask_frame_refuses_ranges_outside_the_buffer(
    impl_name: str, key_at: int, length: int
) -> None:
    unmask = get_unmask(impl_name)
    buf = b"\x81\x85abcd" + b"hello" + b"xy"  # 13 bytes
    with pytest.raises(ValueError, match="outside the buffer"):
        unmask(buf, key_at, length)


@given(
    st.binary(max_size=300),
    st.binary(min_size=4, max_size=4),
    st.integers(0, 20),
    st.binary(max_size=20),
)
def test_unmask_frame_c_equals_python(
    payload: bytes, key: bytes, before: int, after: bytes
) -> None:
    c_unmask = get_unmask("c")
    buf = b"\x00" * before + key + reference(payload, key) + after
    assert c_unmask(buf, before, len(payload)) == payload
    assert masking.unmask_frame_python(buf, before, len(payload)) == payload
