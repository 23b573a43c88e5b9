"""HTTP headers: a case-insensitive multi-map that keeps the order it was given."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Union

__all__ = ["Headers", "HeadersLike", "MultipleValuesError"]


_FORBIDDEN = frozenset("\r\n\0")


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
        self._dict: dict[str, list[str]] = {}
        self._list: list[tuple[str, str]] = []
        self.update(*args, **kwargs)

    def __str__(self) -> str:
        return "".join(f"{key}: {value}\r\n" for key, value in self._list) + "\r\n"

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self._list!r})"

    def copy(self) -> Headers:
        copy = self.__class__()
        copy._dict = {key: list(values) for key, values in self._dict.items()}
        copy._list = list(self._list)
        return copy

    def serialize(self) -> bytes:
        return str(self).encode()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._dict

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __getitem__(self, key: str) -> str:
        values = self._dict[key.lower()]
        if len(values) == 1:
            return values[0]
        raise MultipleValuesError(f"{key} appears {len(values)} times")

    def __setitem__(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"header name and value must be str, got {key!r}: {value!r}")
        if _FORBIDDEN.intersection(key) or _FORBIDDEN.intersection(value) or ":" in key:
            # CR/LF in a field would let a caller inject headers or a body.
            raise ValueError(f"invalid header {key!r}: CR, LF and NUL aren't allowed")
        self._dict.setdefault(key.lower(), []).append(value)
        self._list.append((key, value))

    def __delitem__(self, key: str) -> None:
        lower = key.lower()
        del self._dict[lower]
        self._list = [(k, v) for k, v in self._list if k.lower() != lower]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._dict == other._dict

    __hash__ = None  # type: ignore[assignment]

    def clear(self) -> None:
        self._dict = {}
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
        return list(self._dict.get(key.lower(), ()))

    def raw_items(self) -> Iterator[tuple[str, str]]:
        """Every (name, value) field, with names as given, in order."""
        return iter(self._list)


HeadersLike = Union[Headers, Mapping[str, str], Iterable[tuple[str, str]]]
