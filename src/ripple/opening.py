"""The shape shared by `serve` and `connect`: ``await x`` or ``async with x as y``."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["Opening"]

T = TypeVar("T")


class Opening(Generic[T]):
    """Something opened by awaiting it, or for the length of an ``async with``.

    Subclasses implement :meth:`open` and :meth:`close_opened`.
    """

    async def open(self) -> T:
        raise NotImplementedError

    async def close_opened(self, value: T) -> None:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, T]:
        return self.open().__await__()

    async def __aenter__(self) -> T:
        self._opened = await self.open()
        return self._opened

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close_opened(self._opened)
