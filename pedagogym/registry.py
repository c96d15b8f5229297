"""Name -> object registries.

Strings exist only at the boundary (CLI, config files). Inside the package, code
passes the registered objects themselves. Each registry has a ``kind`` that
``pedagogym list`` prints beside every entry.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from pedagogym.errors import PedagogymError

T = TypeVar("T")

_ALL: dict[str, "Registry"] = {}


class StaticArg:
    """Value-based hashing and equality from ``_static_key()`` (default: the type alone), so
    that registered objects (student models, components, rewards, featurizers, policies) are
    valid static ``jit`` arguments: equal settings hit the same compiled function."""

    def __hash__(self) -> int:
        return hash((type(self), self._static_key()))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._static_key() == other._static_key()  # type: ignore[attr-defined]

    def _static_key(self) -> tuple:
        return ()


class RegistryError(PedagogymError, KeyError):
    """Unknown name or duplicate registration (a ``KeyError`` too, for callers that catch one)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    """An ordered mapping from names to objects of one kind."""

    def __init__(self, kind: str):
        if kind in _ALL:
            raise RegistryError(f"a registry of kind {kind!r} already exists")
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._loaders: list[Callable[[], None]] = []
        _ALL[kind] = self

    def register(self, name: str, obj: T) -> T:
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def add_loader(self, loader: Callable[[], None]) -> None:
        """A function that registers entries lazily (e.g. files found on disk)."""
        self._loaders.append(loader)

    def _load(self) -> None:
        loaders, self._loaders = self._loaders, []
        for loader in loaders:
            loader()

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return list(self._entries.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)


def registries() -> dict[str, Registry]:
    """Every registry created so far, by kind (the CLI imports the packages that fill them)."""
    return dict(_ALL)
