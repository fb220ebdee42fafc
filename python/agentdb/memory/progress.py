"""Progress bars for long work: rich when installed and enabled, silent otherwise.

>>> with progress_bar(3, "demo", enabled=False) as advance:
...     advance(3)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(total: int, description: str, enabled: bool | None = None
                 ) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``. ``enabled=None`` shows a bar only on a terminal.

    >>> with progress_bar(1, "x", enabled=False) as adv:
    ...     adv(1)
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda n: None
        return
    try:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )
    except ImportError:  # the 'cli' extra is not installed: stay quiet
        yield lambda n: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
