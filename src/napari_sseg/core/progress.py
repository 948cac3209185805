"""Progress events that long-running generators yield (one core drives tqdm and napari bars)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Progress", "run_generator"]

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One progress step.

    Attributes
    ----------
    step : int
        Steps done so far.
    total : int
        Steps in all (0 when unknown).
    message : str
        What is being done.
    """

    step: int
    total: int
    message: str = ""


def run_generator(
    gen: Generator[Progress, None, T], callback: Callable[[Progress], None] | None = None
) -> T:
    """Drive a progress generator to its end and return its result.

    Parameters
    ----------
    gen : generator
        Yields :class:`Progress` and returns the result.
    callback : callable, optional
        Called with every progress event.
    """
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)
