"""Progress of a running distill, for whoever displays it: the stage that runs now, counts within the long ones
(inputs evaluated, candidate families filtered, cubes solved) and short notes. Nothing is shown unless a display
listens (``listening``); the CLI listens on a terminal only.

Stages call ``stage(name)`` when they *start*, so a display names the work in progress, not the work just done.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class Listener(Protocol):
    def stage(self, name: str) -> None: ...
    def count(self, done: int, total: int, unit: str) -> None: ...
    def note(self, text: str) -> None: ...


_listener: ContextVar[Listener | None] = ContextVar("jaxscd_progress", default=None)


@contextmanager
def listening(listener: Listener):
    token = _listener.set(listener)
    try:
        yield listener
    finally:
        _listener.reset(token)


def stage(name: str) -> None:
    if (listener := _listener.get()) is not None:
        listener.stage(name)


def advance(done: int, total: int, unit: str) -> None:
    if (listener := _listener.get()) is not None:
        listener.count(int(done), int(total), unit)


def note(text: str) -> None:
    if (listener := _listener.get()) is not None:
        listener.note(text)


def counted(items: Iterable, total: int, unit: str) -> Iterator:
    """``items``, advancing the count as each one is consumed."""
    advance(0, total, unit)
    for done, item in enumerate(items, 1):
        yield item
        advance(done, total, unit)
