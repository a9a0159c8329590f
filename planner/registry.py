"""Name lookup for the registries of buildable parts (guardrails, optimizers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(registry: Mapping[str, T], kind: str, name: str) -> T:
    """``registry[name]``; an unknown name is a ``KeyError`` that lists the known ones (``unknown <kind> ...``)."""
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(registry))}") from None
