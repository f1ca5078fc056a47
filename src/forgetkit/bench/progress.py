"""Progress of sweeps, training and unlearning: rich bars on a terminal, plain lines otherwise.

Redirected to a file (``make demo > log``), rich bars would show nothing until the end; there one
line per finished step (a model trained, a cell finished, each with its time) is printed instead.
With ``progress: metrics`` each unlearning epoch also prints its forget and retain accuracy
(:class:`~forgetkit.unlearn.progress.EpochMetrics`), as torchunlearn does; sweeps leave it off by default.
"""
from __future__ import annotations

import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

from ..unlearn.progress import EpochMetrics

METRICS = "metrics"
"""the progress setting that adds a per-epoch accuracy line to the bars or plain lines"""


class Progress:
    """One overall bar for cells and one transient bar for the current training/unlearning loop.

    ``enabled=False``: silent. ``tty=None``: bars if stdout is a terminal, plain lines if not.
    ``enabled="metrics"``: as True, and each unlearning epoch adds a line of forget/retain accuracy.
    """

    def __init__(self, enabled: bool | str = True, tty: bool | None = None, stream=None):
        if not isinstance(enabled, bool) and enabled != METRICS:
            raise ValueError(f"progress must be True, False or {METRICS!r}, got {enabled!r}")
        self.metrics = enabled == METRICS
        enabled = bool(enabled)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stdout
        self.plain = enabled and not (self.stream.isatty() if tty is None else tty)
        self._p = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), transient=False) if enabled and not self.plain else None
        self._step_task = None
        self._tasks: dict[int, dict] = {}
        self._doing = ""  # the latest description (the cell a metrics line belongs to)

    def __enter__(self):
        if self._p:
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.__exit__(*exc)

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A one-off line (e.g. "model trained in 12.3 s"): logged above the bars, or printed."""
        if self._p:
            self._p.console.log(text)
        elif self.plain:
            self._line(text)

    def overall(self, total: int, done: int = 0):
        if self._p:
            return self._p.add_task("cells", total=total, completed=done)
        if self.plain:
            task = len(self._tasks)
            self._tasks[task] = {"total": total, "done": done, "text": "cell", "start": time.perf_counter()}
            self._line(f"{total} cells, {done} already in the store")
            return task
        return None

    def describe(self, task, text: str):
        self._doing = text
        if self._p and task is not None:
            self._p.update(task, description=text)
        elif self.plain and task is not None:
            self._tasks[task].update(text=text, start=time.perf_counter())

    def advance(self, task, n: int = 1):
        if self._p and task is not None:
            self._p.advance(task, n)
        elif self.plain and task is not None:
            t = self._tasks[task]
            t["done"] += n
            self._line(f"[{t['done']}/{t['total']}] {t['text']}: finished in {time.perf_counter() - t['start']:.1f} s")
            t["start"] = time.perf_counter()

    def steps(self, label: str):
        """A callback ``(step, total)`` that drives a per-loop bar labelled ``label`` (plain: one
        line when the loop finishes); with metrics, an unlearning loop's callback also writes a
        line per epoch (:class:`EpochMetrics`)."""
        bar = self._steps(label)
        if self.metrics and label == "unlearning":
            return EpochMetrics(bar, self.note, label=f"{self._doing}: {label}" if self._doing else label)
        return bar

    def _steps(self, label: str):
        if self.plain:
            started = [time.perf_counter()]

            def report(step: int, total: int):
                if step == 1:
                    started[0] = time.perf_counter()
                if step == total:
                    self._line(f"  {label}: {total} steps in {time.perf_counter() - started[0]:.1f} s")

            return report
        if not self._p:
            return None

        def update(step: int, total: int):
            if self._step_task is None or step == 1:
                if self._step_task is not None:
                    self._p.remove_task(self._step_task)
                self._step_task = self._p.add_task(f"  {label}", total=total)
            self._p.update(self._step_task, completed=step, total=total)

        return update
