"""Rich progress bars for sweeps, training and unlearning (silent when disabled)."""
from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn


class Progress:
    """One overall bar for cells and one transient bar for the current training/unlearning loop."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._p = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), transient=False) if enabled else None
        self._step_task = None

    def __enter__(self):
        if self._p:
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.__exit__(*exc)

    def overall(self, total: int, done: int = 0):
        return self._p.add_task("cells", total=total, completed=done) if self._p else None

    def describe(self, task, text: str):
        if self._p and task is not None:
            self._p.update(task, description=text)

    def advance(self, task, n: int = 1):
        if self._p and task is not None:
            self._p.advance(task, n)

    def steps(self, label: str):
        """A callback ``(step, total)`` that drives a per-loop bar labelled ``label``."""
        if not self._p:
            return None

        def update(step: int, total: int):
            if self._step_task is None or step == 1:
                if self._step_task is not None:
                    self._p.remove_task(self._step_task)
                self._step_task = self._p.add_task(f"  {label}", total=total)
            self._p.update(self._step_task, completed=step, total=total)

        return update
