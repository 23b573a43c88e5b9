"""Tests for PayloadSink (src/ripple/protocol/sink.py): a large payload
received in place, with the C speedup and without it."""

from __future__ import annotations

import pytest
from protocol_helpers import KEY, speedups, xor

from ripple.protocol import sink as sink_module
from ripple.protocol.sink import PayloadSink

PAYLOAD = bytes(range(256)) * 300  # 76,800 bytes


@pytest.fixture(params=["c", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(sink_module, "payload_buffer_c", None)
        monkeypatch.setattr(sink_module, "mask_inplace_c", None)
    else:
        c = speedups()
        # Set explicitly: under RIPPLE_NO_SPEEDUPS=1 the module holds None.
        monkeypatch.setattr(sink_module, "payload_buffer_c", c.payload_buffer)
        monkeypatch.setattr(sink_module, "mask_inplace_c", c.mask_inplace)
    return str(request.param)


@pytest.mark.parametrize("masked", [True, False])
def test_fed_and_read_into_in_pieces(impl: str, masked: bool) -> None:
    wire = xor(PAYLOAD, KEY) if masked else PAYLOAD
    s = PayloadSink(0x82, KEY if masked else None, len(PAYLOAD))
    assert s.in_place is (impl == "c")
    assert s.feed(wire[:1000]) == 1000
    pos = 1000
    while not s.done:
        room = s.missing()
        if room is None:  # not in place: fed, as Protocol.receive_data does
            assert s.feed(wire[pos : pos + 4096]) == min(4096, len(PAYLOAD) - pos)
            pos += 4096
            continue
        assert len(room) == len(PAYLOAD) - pos  # never empty before done
        n = min(4096, len(room))
        room[:n] = wire[pos : pos + n]  # as a socket read into get_buffer() would
        s.filled(n)
        pos += n
    payload = s.payload()
    assert type(payload) is bytes
    assert payload == PAYLOAD


def test_feed_takes_only_what_fits(impl: str) -> None:
    s = PayloadSink(0x82, None, 10)
    assert s.feed(b"0123456") == 7
    assert s.feed(memoryview(b"789abcdef")) == 3  # the rest belongs to the next frame
    assert s.done
    assert s.payload() == b"0123456789"


def test_nothing_missing_once_done(impl: str) -> None:
    s = PayloadSink(0x82, KEY, 8)
    s.feed(xor(b"abcdefgh", KEY))
    view = s.missing()
    assert view is None if impl == "python" else len(view) == 0
    assert s.payload() == b"abcdefgh"


def test_huge_declared_sizes_grow_as_data_arrives(impl: str) -> None:
    # Nothing is reserved for what a header merely declares past IN_PLACE_MAX.
    for size in (sink_module.IN_PLACE_MAX + 1, 2**62):
        s = PayloadSink(0x82, None, size)
        assert not s.in_place and s.missing() is None
        assert s.feed(b"abc") == 3 and not s.done


def test_no_memory_for_in_place_means_growing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(size: int) -> tuple[bytes, memoryview]:
        raise MemoryError

    monkeypatch.setattr(sink_module, "payload_buffer_c", no_memory)
    s = PayloadSink(0x82, KEY, 5)
    assert not s.in_place
    s.feed(xor(b"hello", KEY))
    assert s.payload() == b"hello"


def test_payload_is_taken_once(impl: str) -> None:
    s = PayloadSink(0x82, None, 3)
    s.feed(b"abc")
    assert s.payload() == b"abc"
    with pytest.raises(AssertionError):
        s.payload()


def test_payload_before_done_is_a_programming_error(impl: str) -> None:
    s = PayloadSink(0x82, None, 3)
    s.feed(b"a")
    with pytest.raises(AssertionError):
        s.payload()


# -- the C helpers ---------------------------------------------------------------


def test_payload_buffer_gives_bytes_and_a_writable_view() -> None:
    c = speedups()
    payload, view = c.payload_buffer(5)  # type: ignore[attr-defined]
    assert type(payload) is bytes and len(payload) == 5
    assert not view.readonly and len(view) == 5
    view[:] = b"hello"
    view.release()
    assert payload == b"hello"
    with pytest.raises(ValueError):
        c.payload_buffer(-1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [0, 1, 7, 64, 1000, 70000])
def test_mask_inplace_matches_apply_mask(size: int) -> None:
    c = speedups()
    data = bytes(i * 31 % 256 for i in range(size))
    buf = bytearray(data)
    c.mask_inplace(buf, KEY)  # type: ignore[attr-defined]
    assert bytes(buf) == xor(data, KEY)


def test_mask_inplace_refuses_bad_arguments() -> None:
    c = speedups()
    with pytest.raises(ValueError, match="4 bytes"):
        c.mask_inplace(bytearray(4), b"abc")  # type: ignore[attr-defined]
    with pytest.raises(BufferError):
        c.mask_inplace(b"read-only", KEY)  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        c.mask_inplace(bytearray(4))  # type: ignore[attr-defined]
