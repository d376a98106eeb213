"""Terminal progress for a sweep: runs done/total, mean and best validation accuracy, ETA."""

from __future__ import annotations

import math


class SweepProgress:
    """rich progress bar fed with finished RunRecords (see execute.run_sweep)."""

    def __init__(self):
        self.best_scores: list[float] = []
        self._progress = None
        self._task = None

    def start(self, total: int, done: int) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._progress = Progress(
            TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[scores]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn())
        self._progress.start()
        self._task = self._progress.add_task("runs", total=total, completed=done,
                                             scores="best val acc: –")

    def advance(self, record) -> None:
        values = [row[5] for row in record.epochs if not math.isnan(row[5])]
        if values:
            self.best_scores.append(max(values))
        scores = "best val acc: –"
        if self.best_scores:
            mean = sum(self.best_scores) / len(self.best_scores)
            scores = f"best val acc: mean {mean:.3f}, top {max(self.best_scores):.3f}"
        self._progress.update(self._task, advance=1, scores=scores)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
