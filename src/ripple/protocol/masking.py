"""WebSocket payload masking (RFC 6455, section 5.3).

Masking XORs every payload byte ``i`` with byte ``i % 4`` of a 4-byte key.
It is an involution: applying the same key twice returns the original data,
so :func:`apply_mask` both masks and unmasks.

:func:`apply_mask` is the C implementation from :mod:`ripple._speedups` when
that extension is built and the environment variable ``RIPPLE_NO_SPEEDUPS``
is not ``"1"``; otherwise it is :func:`apply_mask_python`. :data:`SPEEDUPS`
says which one is active.
"""

from __future__ import annotations

import collections
import importlib
import os
from collections.abc import Callable
from typing import Any, Final, TypeAlias, cast

__all__ = ["MASK_LEN", "SPEEDUPS", "apply_mask", "apply_mask_python", "new_mask"]

BytesLike: TypeAlias = bytes | bytearray | memoryview

#: Length of a WebSocket masking key in bytes.
MASK_LEN: Final = 4

# Inputs up to this size are XORed as one big int; larger ones in chunks of this size.
# Must be a multiple of MASK_LEN so that every chunk starts at key phase 0.
_CHUNK: Final = 8 * 1024


def _bad_mask(length: int) -> ValueError:
    return ValueError(f"mask must be exactly {MASK_LEN} bytes, got {length}")


def apply_mask_python(data: BytesLike, mask: BytesLike) -> bytes:
    """Return ``data`` XORed with the 4-byte masking key ``mask`` (pure Python).

    Raises :class:`ValueError` if ``mask`` is not exactly 4 bytes long, and
    :class:`TypeError` if either argument is not a bytes-like object.
    """
    if not isinstance(mask, bytes):
        mask = memoryview(mask).tobytes()
    if len(mask) != MASK_LEN:
        raise _bad_mask(len(mask))
    if not isinstance(data, (bytes, bytearray)):
        # memoryview() rejects non-buffers (int.from_bytes would accept lists of ints);
        # flatten multi-byte item formats so len() and slicing count bytes.
        data = memoryview(data)
        if data.ndim != 1 or data.itemsize != 1:
            data = memoryview(data.tobytes())
    size = len(data)
    # One big-int XOR (C loops only) timed fastest: 2x bytes.translate at 32 B, 30x a byte loop.
    if size <= _CHUNK:
        key = int.from_bytes(mask * (size >> 2) + mask[: size & 3], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")
    # Huge ints thrash the cache: 8 KiB chunks timed 2.5x faster than one int at 1 MiB.
    view = data if isinstance(data, memoryview) else memoryview(data)
    key = int.from_bytes(mask * (_CHUNK // MASK_LEN), "little")
    parts: list[bytes] = []
    append = parts.append
    whole = size - size % _CHUNK
    for start in range(0, whole, _CHUNK):
        chunk = int.from_bytes(view[start : start + _CHUNK], "little")
        append((chunk ^ key).to_bytes(_CHUNK, "little"))
    rest = size - whole
    if rest:
        tail = int.from_bytes(view[whole:], "little")
        append((tail ^ (key & ((1 << (8 * rest)) - 1))).to_bytes(rest, "little"))
    return b"".join(parts)


def unmask_frame_python(buf: BytesLike, key_at: int, length: int) -> bytes:
    """The ``length`` payload bytes after the masking key at ``buf[key_at:key_at + 4]``,
    unmasked.

    Raises:
        ValueError: the key or the payload lies outside ``buf``.
    """
    view = memoryview(buf)
    start = key_at + 4
    if key_at < 0 or length < 0 or start + length > len(view):
        raise ValueError("masking key or payload outside the buffer")
    return apply_mask_python(view[start : start + length], view[key_at:start])


def _load_speedup() -> Any:
    if os.environ.get("RIPPLE_NO_SPEEDUPS") == "1":
        return None
    try:
        return importlib.import_module("ripple._speedups")
    except ImportError:
        return None


_speedups = _load_speedup()
_apply_mask_c = (
    None
    if _speedups is None
    else cast("Callable[[BytesLike, BytesLike], bytes]", _speedups.apply_mask)
)

#: True when :func:`apply_mask` is the C implementation from ``ripple._speedups``.
SPEEDUPS: Final[bool] = _apply_mask_c is not None

#: Mask or unmask ``data`` with the 4-byte key ``mask`` (C when available).
apply_mask: Final[Callable[[BytesLike, BytesLike], bytes]] = (
    _apply_mask_c if _apply_mask_c is not None else apply_mask_python
)

# The rest of the C speedups, None without them (the callers keep Python paths).
#: C: parse the common frames of a buffer in one call (see ripple/_speedups.c).
parse_frames_c: Final[Callable[[BytesLike, int, int, bool, int, list[Any]], int] | None] = getattr(
    _speedups, "parse_frames", None
)
#: C: the message when a buffer is exactly one such frame, else None.
parse_message_c: Final[Callable[[BytesLike, int, bool, int], str | bytes | None] | None] = getattr(
    _speedups, "parse_message", None
)
#: C: one unmasked FIN frame, header and payload in one allocation.
encode_frame_c: Final[Callable[[int, str | BytesLike], bytes] | None] = getattr(
    _speedups, "encode_frame", None
)

#: C: ``(bytes, writable memoryview of it)`` to receive a payload in place.
payload_buffer_c: Final[Callable[[int], tuple[bytes, memoryview]] | None] = getattr(
    _speedups, "payload_buffer", None
)
#: C: XOR a writable buffer with a 4-byte key in place.
mask_inplace_c: Final[Callable[[BytesLike, BytesLike], None] | None] = getattr(
    _speedups, "mask_inplace", None
)

#: Unmask a frame's payload straight from the receive buffer (C when available).
# getattr: a stale build of the extension may predate unmask_frame.
unmask_frame: Final[Callable[[BytesLike, int, int], bytes]] = cast(
    "Callable[[BytesLike, int, int], bytes]",
    getattr(_speedups, "unmask_frame", None) or unmask_frame_python,
)


# Masking keys are drawn from a pool filled by os.urandom (the OS CSPRNG), never `random`.
# Pooling is safe: every key is still CSPRNG output and each 4-byte slice is handed out
# exactly once, so keys stay unpredictable and independent; it only amortises the syscall.
_POOL_SIZE: Final = 4096
_pool: collections.deque[bytes] = collections.deque()


def _refill() -> None:
    buf = os.urandom(_POOL_SIZE)
    _pool.extend([buf[i : i + MASK_LEN] for i in range(0, _POOL_SIZE, MASK_LEN)])


def new_mask() -> bytes:
    """Return a fresh, unpredictable 4-byte masking key."""
    # deque.popleft() is atomic, so concurrent threads never receive the same key;
    # a racing double refill merely adds more fresh keys.
    while True:
        try:
            return _pool.popleft()
        except IndexError:
            _refill()


if hasattr(os, "register_at_fork"):
    # A forked child must not reuse keys its parent may also hand out: drop the pool.
    os.register_at_fork(after_in_child=_pool.clear)
