"""Name → class registries with a decorator, so new parts are found (and tested) automatically."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of components; ``@registry.register("name")`` adds one."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, override: bool = False) -> Callable[[T], T]:
        """``override=True`` replaces an existing entry (a plug-in's deliberate replacement)."""

        def add(item: T) -> T:
            if name in self._items and not override:
                raise ValueError(f"{self.kind} {name!r} is already registered; pick another name "
                                 "or pass override=True to replace it")
            self._items[name] = item
            try:
                item.registry_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return item

        return add

    def get(self, name: str) -> T:
        if not isinstance(name, str) or name not in self._items:
            from .options import suggestion

            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}{suggestion(name, self._items)}; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items
