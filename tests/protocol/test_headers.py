"""headers.py: the case-insensitive, order-keeping, multi-valued Headers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ripple.protocol.headers import Headers, MultipleValuesError


def test_case_insensitive_lookup() -> None:
    headers = Headers({"Upgrade": "websocket"})
    for name in ("Upgrade", "upgrade", "UPGRADE", "uPgRaDe"):
        assert headers[name] == "websocket"
        assert name in headers
        assert headers.get(name) == "websocket"
        assert headers.get_all(name) == ["websocket"]


def test_missing_header() -> None:
    headers = Headers()
    with pytest.raises(KeyError):
        headers["Host"]
    assert headers.get("Host") is None
    assert headers.get("Host", "default") == "default"
    assert headers.get_all("Host") == []
    assert "Host" not in headers
    assert 1 not in headers  # type: ignore[comparison-overlap]
    with pytest.raises(KeyError):
        del headers["Host"]


def test_setitem_adds_a_field() -> None:
    headers = Headers()
    headers["X"] = "1"
    headers["x"] = "2"
    assert headers.get_all("X") == ["1", "2"]
    assert list(headers.raw_items()) == [("X", "1"), ("x", "2")]
    assert len(headers) == 1


def test_multiple_values() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2")])
    with pytest.raises(MultipleValuesError, match="Set-Cookie appears 2 times"):
        headers["Set-Cookie"]
    with pytest.raises(LookupError):
        headers.get("Set-Cookie")  # not silently one of them
    assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"]


def test_delete_removes_every_field() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    del headers["a"]
    assert "A" not in headers
    assert list(headers.raw_items()) == [("B", "2")]
    assert str(headers) == "B: 2\r\n\r\n"


def test_order_and_names_kept() -> None:
    headers = Headers([("Host", "h"), ("X-B", "2"), ("x-a", "1"), ("X-B", "3")])
    assert list(headers) == ["host", "x-b", "x-a"]
    assert list(headers.raw_items()) == [("Host", "h"), ("X-B", "2"), ("x-a", "1"), ("X-B", "3")]
    assert headers.serialize() == b"Host: h\r\nX-B: 2\r\nx-a: 1\r\nX-B: 3\r\n\r\n"
    assert repr(headers) == "Headers([('Host', 'h'), ('X-B', '2'), ('x-a', '1'), ('X-B', '3')])"


def test_serialize_empty() -> None:
    assert Headers().serialize() == b"\r\n"


@pytest.mark.parametrize(
    "arg",
    [
        {"A": "1", "B": "2"},
        [("A", "1"), ("B", "2")],
        (("A", "1"), ("B", "2")),
        Headers([("A", "1"), ("B", "2")]),
    ],
)
def test_constructor_arguments(arg: object) -> None:
    headers = Headers(arg)  # type: ignore[arg-type]
    assert list(headers.raw_items()) == [("A", "1"), ("B", "2")]


def test_constructor_kwargs_and_update() -> None:
    headers = Headers({"A": "1"}, B="2")
    headers.update([("C", "3")], D="4")
    assert list(headers.raw_items()) == [("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")]
    with pytest.raises(TypeError, match="at most 1 argument"):
        headers.update({}, {})  # type: ignore[call-arg]


def test_update_from_headers_keeps_repeats() -> None:
    source = Headers([("X", "1"), ("X", "2")])
    target = Headers()
    target.update(source)
    assert target.get_all("x") == ["1", "2"]


def test_copy_is_independent() -> None:
    headers = Headers([("A", "1")])
    copy = headers.copy()
    copy["A"] = "2"
    copy["B"] = "3"
    assert headers.get_all("A") == ["1"]
    assert "B" not in headers
    assert copy.get_all("A") == ["1", "2"]
    assert type(copy) is Headers


def test_equality() -> None:
    assert Headers([("A", "1"), ("B", "2")]) == Headers([("b", "2"), ("a", "1")])
    assert Headers([("A", "1"), ("A", "2")]) != Headers([("A", "2"), ("A", "1")])
    assert Headers([("A", "1")]) != Headers([("A", "1"), ("A", "1")])
    assert Headers() != {}
    with pytest.raises(TypeError):
        hash(Headers())


def test_clear() -> None:
    headers = Headers([("A", "1")])
    headers.clear()
    assert len(headers) == 0
    assert list(headers.raw_items()) == []
    assert headers.serialize() == b"\r\n"


def test_mutable_mapping_methods() -> None:
    headers = Headers([("A", "1"), ("B", "2")])
    assert headers.pop("a") == "1"
    assert "A" not in headers
    assert headers.setdefault("B", "x") == "2"
    assert headers.setdefault("C", "3") == "3"
    assert dict(headers.items()) == {"b": "2", "c": "3"}


NAMES = st.sampled_from(["Host", "host", "X-A", "x-a", "X-B", "Upgrade"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAMES, st.text(alphabet="abc 1", max_size=5)), max_size=10))
def test_get_all_matches_fields(fields: list[tuple[str, str]]) -> None:
    headers = Headers(fields)
    assert list(headers.raw_items()) == fields
    for name in {n.lower() for n, _ in fields}:
        assert headers.get_all(name) == [v for n, v in fields if n.lower() == name]
    assert len(headers) == len({n.lower() for n, _ in fields})


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "a\r\nEvil: 1"), ("X-A", "a\nb"), ("X-A", "a\0"), ("X\r\nB", "v"), ("X:Y", "v")],
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    headers = Headers()
    with pytest.raises(ValueError, match="CR, LF and NUL"):
        headers[name] = value
    assert list(headers.raw_items()) == []


def test_header_values_must_be_str() -> None:
    with pytest.raises(TypeError, match="must be str"):
        Headers({"X-A": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize("bad", ["\r", "\n", "\0"])
@pytest.mark.parametrize("where", ["name", "value"])
def test_each_forbidden_character_is_refused(bad: str, where: str) -> None:
    headers = Headers()
    name, value = ("X" + bad, "v") if where == "name" else ("X", "a" + bad + "b")
    with pytest.raises(ValueError, match="CR, LF and NUL"):
        headers[name] = value


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(NAMES, st.text(alphabet="abc 1", max_size=5)), max_size=12),
    NAMES,
)
def test_contains_with_and_without_index(fields: list[tuple[str, str]], name: str) -> None:
    # A short list is scanned before its index exists; the answer is the same.
    expected = name.lower() in {n.lower() for n, _ in fields}
    assert (name in Headers(fields)) is expected
    indexed = Headers(fields)
    indexed.get_all("x")  # builds the index
    assert (name in indexed) is expected
    assert 1 not in Headers(fields)


def test_parsed_constructor() -> None:
    fields = [("Upgrade", "websocket"), ("X", "1"), ("x", "2")]
    headers = Headers._parsed(list(fields), None)
    assert headers == Headers(fields)
    assert list(headers.raw_items()) == fields
    assert headers.get_all("X") == ["1", "2"]
    indexed = Headers._parsed(list(fields), {"upgrade": ["websocket"], "x": ["1", "2"]})
    assert indexed == headers
    headers["Y"] = "3"  # still validated and indexed afterwards
    assert headers["y"] == "3"
