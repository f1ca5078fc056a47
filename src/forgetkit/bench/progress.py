"""Progress of sweeps, training and unlearning: rich bars on a terminal, plain lines otherwise.

Redirected to a file (``make demo > log``), rich bars would show nothing until the end; there one
line per finished step (a model trained, a cell finished, each with its time) is printed instead.
With ``progress: metrics`` each unlearning epoch also prints its forget and retain accuracy
(:class:`EpochMetrics`), as torchunlearn does; sweeps leave it off by default.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

from ..data.base import as_float

METRICS = "metrics"
"""the progress setting that adds a per-epoch accuracy line to the bars or plain lines"""
METRIC_SAMPLES = 512
"""at most this many forget and this many retain samples are scored per epoch (a fixed seeded draw)"""
EVAL_BATCH = 512


class EpochMetrics:
    """A progress callback ``(step, total)`` that also writes, after every engine epoch, a line of
    forget and retain accuracy (eval mode, fp32, no gradients; the model's mode is restored).

    The engine calls :meth:`epoch_end`; the samples are drawn once per run (seeded, at most
    ``samples`` of each split), so the lines of one run are comparable. ``steps``: the step
    callback to forward to (a bar); ``write``: where lines go (default: print to stdout).
    """

    def __init__(self, steps: Callable[[int, int], None] | None = None, write: Callable[[str], None] | None = None,
                 samples: int = METRIC_SAMPLES, label: str = "unlearning"):
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        self.steps, self.samples, self.label = steps, samples, label
        self.write = write or (lambda line: print(line, flush=True))
        self._ctx, self._data, self.lines = None, {}, 0

    def __call__(self, step: int, total: int) -> None:
        if self.steps is not None:
            self.steps(step, total)

    def _sample(self, ctx) -> dict:
        if self._ctx is not ctx:  # a new run (or a method's next stage): draw its samples once
            self._ctx, self._data = ctx, {}
            for name in ("forget", "retain"):
                split = getattr(ctx, name)
                if split is None or not len(split):
                    continue
                gen = torch.Generator().manual_seed(0)
                pos = torch.randperm(len(split), generator=gen)[:self.samples].sort().values
                self._data[name] = (split.x[pos], split.y[pos.to(split.y.device)])
        return self._data

    @torch.no_grad()
    def accuracies(self, model: torch.nn.Module, ctx) -> dict[str, float]:
        """Top-1 accuracy in % on the fixed forget / retain samples of ``ctx``."""
        mode = model.training
        model.eval()
        dev = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
        out = {}
        try:
            for name, (x, y) in self._sample(ctx).items():
                hits = sum((model(as_float(x[i:i + EVAL_BATCH].to(dev))).float().argmax(1).cpu()
                            == y[i:i + EVAL_BATCH].cpu()).sum().item() for i in range(0, len(y), EVAL_BATCH))
                out[name] = 100.0 * hits / len(y)
        finally:
            model.train(mode)
        return out

    def epoch_end(self, model: torch.nn.Module, ctx, epoch: int, record: dict) -> None:
        """Write epoch ``epoch``'s line (called by the engine after each epoch)."""
        self.line(model, ctx, f"{self.label} epoch {epoch + 1}", f"loss {record['loss']:.4f}")

    def line(self, model: torch.nn.Module, ctx, *head: str) -> None:
        """Write ``head`` and the accuracies of ``model`` on the samples of ``ctx`` as one line."""
        acc = self.accuracies(model, ctx)
        parts = [*head] + [f"{name} acc {acc[name]:.1f} % (n={len(self._data[name][1])})"
                           for name in ("forget", "retain") if name in acc]
        self.write("  " + "  ".join(parts))
        self.lines += 1


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
