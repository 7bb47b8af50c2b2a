"""Progress display for long CLI steps: a spinner on the running step, its time when done."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


class StepReporter:
    """Call it with a message to start a step; the previous step is closed with its time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status = None
        self._message: str | None = None
        self._started = 0.0

    def __call__(self, message: str) -> None:
        self.close()
        self._message = message
        self._started = time.perf_counter()
        self._status = self.console.status(f"[bold]{message}[/]…")
        self._status.start()

    def close(self) -> None:
        """Finish the running step, printing how long it took."""
        if self._status is not None:
            self._status.stop()
            seconds = time.perf_counter() - self._started
            self.console.print(f"[green]✓[/] {self._message} [dim]({seconds:.1f}s)[/]")
            self._status = None


@contextmanager
def steps(console: Console) -> Iterator[StepReporter]:
    """A StepReporter that closes its last step when the block ends."""
    reporter = StepReporter(console)
    try:
        yield reporter
    finally:
        reporter.close()


@contextmanager
def progress_bar(console: Console, description: str) -> Iterator[callable]:
    """Yield ``update(done, total)`` driving a rich progress bar."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update
