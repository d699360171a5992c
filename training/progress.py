"""A rich progress bar for training: steps, steps/s, ETA and the current mean episode cost."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _Speed(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- steps/s" if speed is None else f"{speed:,.0f} steps/s")


class TrainProgress:
    """Context manager; ``update(steps_done, cost=..., ratio=...)``. Silent when ``enabled`` is False."""

    def __init__(
        self, total: int, description: str, enabled: bool = True, console: Console | None = None, start: int = 0
    ) -> None:
        self.enabled = enabled
        self.total = total
        self.description = description
        self.start = start
        self._progress: Progress | None = None
        self._task: Any = None
        self._console = console

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            console = self._console or Console()
            if not console.is_terminal and console.width < 140:
                console = Console(width=140)  # piped output (make demo | tee, CI logs): room for every column
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                _Speed(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, completed=self.start, stats="")
        return self

    def update(self, steps_done: int, cost: float | None = None, ratio: float | None = None) -> None:
        if self._progress is None:
            return
        stats = []
        if cost is not None and cost == cost:
            stats.append(f"cost/period {cost:.2f}")
        if ratio is not None and ratio == ratio:
            stats.append(f"vs baseline {ratio:.3f}")
        self._progress.update(self._task, completed=steps_done, stats="  ".join(stats))

    def log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None
