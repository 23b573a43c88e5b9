"""HTTP headers: a case-insensitive multi-map that keeps the order it was given."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Union

__all__ = ["Headers", "HeadersLike", "MultipleValuesError"]


class MultipleValuesError(LookupError):
    """``headers[name]`` was used on a header that appears more than once."""


class Headers(MutableMapping[str, str]):
    """HTTP headers with case-insensitive names and repeatable fields.

    ``headers[name]`` returns the single value of a header and raises
    :class:`MultipleValuesError` when it has several (a handshake header that
    appears twice is suspicious); :meth:`get_all` returns every value.
    Assigning ``headers[name] = value`` *adds* a field, as HTTP allows.

    Example::

        headers = Headers({"Upgrade": "websocket"})
        headers["X-Trace"] = "1"
        assert headers["upgrade"] == "websocket"
    """

    __slots__ = ("_dict", "_list")

    def __init__(self, *args: HeadersLike, **kwargs: str) -> None:
        # The fields in order; the lookup index is built on first use and
        # dropped by compact(): idle connections keep their handshake
        # headers, so the index mustn't cost memory for each of them.
        self._list: list[tuple[str, str]] = []
        self._dict: dict[str, list[str]] | None = None
        self.update(*args, **kwargs)

    @classmethod
    def _parsed(cls, fields: list[tuple[str, str]], index: dict[str, list[str]] | None) -> Headers:
        """Headers from fields known to be valid (parsed, or constants), and
        their index if built: without __setitem__'s checks, for the handshake."""
        headers = cls.__new__(cls)
        headers._list = fields
        headers._dict = index
        return headers

    def _index(self) -> dict[str, list[str]]:
        index = self._dict
        if index is None:
            index = {}
            for key, value in self._list:
                index.setdefault(key.lower(), []).append(value)
            self._dict = index
        return index

    def compact(self) -> None:
        """Drop the lookup index (it's rebuilt on the next lookup) to save memory."""
        self._dict = None

    def __str__(self) -> str:
        # A list comprehension: join() builds a list from a generator anyway.
        return "".join([f"{key}: {value}\r\n" for key, value in self._list]) + "\r\n"

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self._list!r})"

    def copy(self) -> Headers:
        copy = self.__class__()
        copy._list = list(self._list)
        return copy

    def serialize(self) -> bytes:
        return str(self).encode()

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if self._dict is None and len(self._list) <= 8:
            # A short list without its index (a response being built): a
            # scan is cheaper than building an index nobody else may use.
            lower = key.lower()
            return any(k.lower() == lower for k, _ in self._list)
        return key.lower() in self._index()

    def __iter__(self) -> Iterator[str]:
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())

    def __getitem__(self, key: str) -> str:
        values = self._index()[key.lower()]
        if len(values) == 1:
            return values[0]
        raise MultipleValuesError(f"{key} appears {len(values)} times")

    def __setitem__(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"header name and value must be str, got {key!r}: {value!r}")
        # Substring tests: several times cheaper than a set intersection.
        if (
            "\r" in key
            or "\n" in key
            or "\0" in key
            or ":" in key
            or "\r" in value
            or "\n" in value
            or "\0" in value
        ):
            # CR/LF in a field would let a caller inject headers or a body.
            raise ValueError(f"invalid header {key!r}: CR, LF and NUL aren't allowed")
        if self._dict is not None:
            self._dict.setdefault(key.lower(), []).append(value)
        self._list.append((key, value))

    def __delitem__(self, key: str) -> None:
        lower = key.lower()
        if lower not in self._index():
            raise KeyError(key)
        self._list = [(k, v) for k, v in self._list if k.lower() != lower]
        self._dict = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._index() == other._index()

    __hash__ = None  # type: ignore[assignment]

    def clear(self) -> None:
        self._dict = None
        self._list = []

    def update(self, *args: HeadersLike, **kwargs: str) -> None:  # type: ignore[override]
        """Add fields from mappings, Headers or iterables of (name, value) pairs."""
        if len(args) > 1:
            raise TypeError(f"update expected at most 1 argument, got {len(args)}")
        if args:
            arg = args[0]
            if isinstance(arg, Headers):
                items: Iterable[tuple[str, str]] = arg.raw_items()
            elif isinstance(arg, Mapping):
                items = arg.items()
            else:
                items = arg
            for key, value in items:
                self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    def get_all(self, key: str) -> list[str]:
        """Every value of a header, in order; [] when it is absent."""
        return list(self._index().get(key.lower(), ()))

    def raw_items(self) -> Iterator[tuple[str, str]]:
        """Every (name, value) field, with names as given, in order."""
        return iter(self._list)


HeadersLike = Union[Headers, Mapping[str, str], Iterable[tuple[str, str]]]
