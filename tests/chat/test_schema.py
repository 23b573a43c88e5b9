"""The chat's JSON messages (ripple.chat.schema), the token bucket and the history."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ripple.chat.history import History
from ripple.chat.ratelimit import TokenBucket
from ripple.chat.schema import (
    ERROR_CODES,
    MAX_NAME_LENGTH,
    Event,
    InvalidInput,
    Join,
    Post,
    User,
    check_name,
    check_text,
    error,
    parse,
    welcome,
)

from .helpers import FakeClock

# -- parse ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"type": "join", "name": "alice"}', Join("alice")),
        ('{"type": "join", "name": "  Zoë  "}', Join("Zoë")),
        ('{"type": "message", "text": "hello"}', Post("hello")),
        ('{"type": "message", "text": "a\\r\\nb\\rc", "extra": 1}', Post("a\nb\nc")),
        (
            '{"type": "message", "text": "<b>bold</b> & \\"quoted\\""}',
            Post('<b>bold</b> & "quoted"'),
        ),
    ],
)
def test_parse_accepts(data: str, expected: object) -> None:
    assert parse(data, 4096) == expected


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("not json", "invalid_json"),
        ("", "invalid_json"),
        ("{", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('"a string"', "invalid_json"),
        ("null", "invalid_json"),
        ("[" * 2000 + "]" * 2000, "invalid_json"),
        ('{"a":' * 1200 + "1" + "}" * 1200, "invalid_json"),
        ("{}", "unknown_type"),
        ('{"type": "shout", "text": "hi"}', "unknown_type"),
        ('{"type": 7}', "unknown_type"),
        ('{"text": "no type"}', "unknown_type"),
        ('{"type": "message"}', "bad_text"),
        ('{"type": "message", "text": 5}', "bad_text"),
        ('{"type": "message", "text": "   \\n "}', "bad_text"),
        ('{"type": "message", "text": "bell \\u0007"}', "bad_text"),
        ('{"type": "message", "text": "esc \\u001b[31m"}', "bad_text"),
        ('{"type": "message", "text": "lone \\ud800 surrogate"}', "bad_text"),
        ('{"type": "join"}', "bad_name"),
        ('{"type": "join", "name": ""}', "bad_name"),
        ('{"type": "join", "name": ["a"]}', "bad_name"),
        (b'{"type": "message", "text": "binary"}', "not_text"),
    ],
)
def test_parse_refuses(data: str | bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(data, 8192)
    assert info.value.code == code
    assert info.value.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(
    st.one_of(
        st.text(max_size=300),
        st.binary(max_size=50),
        json_values.map(json.dumps),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["join", "message", "x"])},
            optional={"name": json_values, "text": json_values},
        ).map(json.dumps),
    )
)
def test_parse_never_fails_otherwise(data: str | bytes) -> None:
    # Whatever a client sends, the server gets a message or an InvalidInput.
    try:
        message = parse(data, 4096)
    except InvalidInput as exc:
        assert exc.code in ERROR_CODES
    else:
        assert isinstance(message, (Join, Post))


def test_parse_size_limit_counts_utf8_bytes() -> None:
    at_limit = json.dumps({"type": "message", "text": "x" * 100})
    limit = len(at_limit)
    assert parse(at_limit, limit) == Post("x" * 100)
    with pytest.raises(InvalidInput) as info:
        parse(at_limit + " ", limit)
    assert info.value.code == "too_big"
    # 3 bytes per character: under the limit in characters, over it in bytes.
    wide = json.dumps({"type": "message", "text": "€" * 100}, ensure_ascii=False)
    assert len(wide) < limit + 10 < len(wide.encode())
    with pytest.raises(InvalidInput) as info:
        parse(wide, limit + 10)
    assert info.value.code == "too_big"


def test_unknown_type_message_is_bounded() -> None:
    with pytest.raises(InvalidInput) as info:
        parse(json.dumps({"type": "x" * 1000}), 4096)
    assert "x" * 100 not in info.value.message


# -- names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("alice", "alice"),
        (" bob ", "bob"),
        ("Ada Lovelace", "Ada Lovelace"),
        ("Zoe\u0308", "Zoë"),  # NFC
        ("山田", "山田"),
        ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),  # text, not HTML
        ("👩\u200d💻 dev", "👩\u200d💻 dev"),
        ("x" * MAX_NAME_LENGTH, "x" * MAX_NAME_LENGTH),
    ],
)
def test_good_names(name: str, shown: str) -> None:
    assert check_name(name) == shown


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "x" * (MAX_NAME_LENGTH + 1),
        "two  spaces",
        "tab\there",
        "new\nline",
        "nul\x00",
        "\u202eevil",  # right-to-left override
        "zero\u200bwidth",  # zero-width space
        "non\u00a0breaking",
        "private\ue000use",
        "\ud800",
        None,
        42,
    ],
)
def test_bad_names(name: object) -> None:
    with pytest.raises(InvalidInput) as info:
        check_name(name)
    assert info.value.code == "bad_name"


@given(st.text(max_size=60))
def test_names_that_pass_are_safe_to_show(name: str) -> None:
    try:
        shown = check_name(name)
    except InvalidInput as exc:
        assert exc.code == "bad_name"
        return
    assert 1 <= len(shown) <= MAX_NAME_LENGTH
    assert shown == shown.strip()
    assert unicodedata.is_normalized("NFC", shown)
    for ch in shown:
        assert ch in " \u200d" or unicodedata.category(ch)[0] in "LMNPS", repr(ch)
    assert check_name(shown) == shown  # idempotent
    shown.encode()  # no lone surrogates


@given(st.text(max_size=200))
def test_texts_that_pass_encode_and_have_no_controls(text: str) -> None:
    try:
        shown = check_text(text)
    except InvalidInput as exc:
        assert exc.code == "bad_text"
        return
    assert shown.strip()
    shown.encode()
    assert "\r" not in shown
    assert all(ch in "\n\t" or unicodedata.category(ch) != "Cc" for ch in shown)


# -- what the server sends -----------------------------------------------------------


def test_event_json() -> None:
    alice = User("a1", "alice")
    assert Event("message", 3, 1700000000123, alice, "hi").as_json() == {
        "type": "message",
        "id": 3,
        "ts": 1700000000123,
        "user": {"id": "a1", "name": "alice"},
        "text": "hi",
    }
    assert Event("join", 4, 5, alice).as_json() == {
        "type": "join",
        "id": 4,
        "ts": 5,
        "user": {"id": "a1", "name": "alice"},
    }


def test_welcome_and_error_json() -> None:
    alice, bob = User("a1", "alice"), User("b2", "bob")
    history = [Event("message", 1, 10, bob, "ça va?")]
    text = welcome(alice, [bob, alice], history, epoch="e", limits={"history": 50})
    assert "ça va?" in text  # UTF-8, not \\u escapes
    assert json.loads(text) == {
        "type": "welcome",
        "you": {"id": "a1", "name": "alice"},
        "epoch": "e",
        "users": [{"id": "b2", "name": "bob"}, {"id": "a1", "name": "alice"}],
        "history": [history[0].as_json()],
        "limits": {"history": 50},
    }
    assert json.loads(error("too_big", "big", limit=3)) == {
        "type": "error",
        "code": "too_big",
        "message": "big",
        "limit": 3,
    }
    assert set(ERROR_CODES) >= {"invalid_json", "unknown_type", "too_big", "rate_limited"}


# -- token bucket and history -------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    clock = FakeClock(100.0)
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.take()
    assert not bucket.take()
    clock.advance(100)  # refills up to the burst, not beyond
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_token_bucket_rate_zero_is_no_limit() -> None:
    bucket = TokenBucket(rate=0, burst=1, clock=FakeClock())
    assert all(bucket.take() for _ in range(1000))
    assert bucket.retry_after() == 0


@pytest.mark.parametrize(("rate", "burst"), [(-1, 1), (float("nan"), 1), (1, 0), (1, 1.5)])
def test_token_bucket_refuses_bad_settings(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


@given(
    rate=st.floats(0.1, 100),
    burst=st.integers(1, 50),
    steps=st.lists(st.floats(0, 2), max_size=100),
)
def test_token_bucket_never_allows_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, steps: list[float]
) -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate, burst, clock)
    allowed = 0
    for step in steps:
        clock.advance(step)
        allowed += bucket.take()
    assert allowed <= burst + rate * clock.now + 1e-6


def test_history_keeps_the_last_n() -> None:
    user = User("u", "u")
    history = History(3)
    for i in range(1, 6):
        history.append(Event("message", i, i, user, str(i)))
    assert [e.id for e in history.recent()] == [3, 4, 5]
    assert len(history) == 3
    none = History(0)
    none.append(Event("message", 1, 1, user, "x"))
    assert none.recent() == []
    with pytest.raises(ValueError):
        History(-1)
