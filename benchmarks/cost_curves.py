"""How each method's unlearning cost grows with the training pool: time and peak memory per point.

    python benchmarks/cost_curves.py run --store runs/cost/points.jsonl [--budget-min 45]
    python benchmarks/cost_curves.py report --store runs/cost/points.jsonl --plot docs/img/cost_curves.png

A point is (method, pool size, forget fraction). Each pool size runs in its own subprocess (a
process per point would cost more than most points on a loaded machine); before each point it
returns freed heap to the kernel (``malloc_trim``) and resets the kernel's high-water mark
(``/proc/self/clear_refs``), then reads ``VmHWM`` after unlearning: the peak above the memory live
before the call (``ru_maxrss``, the whole process's peak, where that reset is unavailable).
Every method runs at its reference defaults except that its passes over the data are cut to ONE
(``epochs=1``; SFRon: one epoch; one-shot methods unchanged), and "retrain" is one epoch of the
training recipe on the retain set: the fitted exponent then says how the cost of one pass grows,
which is what a full run multiplies by its epochs. Class-only methods (SVD, TRW, ...) forget whole
classes instead: one class at 10 %, five at 50 %, no point at 1 %.

The store is JSON lines, one point a line; a point already there is skipped, so ``run`` resumes.
Points run smallest pool first. A point over ``--point-timeout`` seconds of CPU time is recorded as such and the same
(method, fraction) is not tried at larger pools (its cost only grows).
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

POOLS = (1000, 3000, 10000, 30000, 60000)
FRACTIONS = (0.01, 0.1, 0.5)
RETRAIN = "retrain"
FALW = "rl+falw"
HELDOUT = 1000
"""held-out images (a stratified sample of the test split, the same at every pool size)"""
ORIGINAL_EPOCHS = 2
"""epochs of the original model: its quality hardly moves a one-pass cost, and it is not timed"""
MODEL = {"name": "cnn", "options": {"width": 32}}
RECIPE = {"lr": 0.05, "batch_size": 128, "schedule": "cosine"}
"""the training recipe of configs/leaderboard-fmnist-cnn-cpu.yaml"""


def method_names() -> list[str]:
    from forgetkit.methods import METHODS

    return [RETRAIN, *METHODS.names(), FALW]


def one_pass_options(name: str) -> dict:
    """Cut a method to one pass over its data; methods without epochs run as they are."""
    from forgetkit.methods import METHODS

    fields = getattr(METHODS.get(name), "__dataclass_fields__", {})
    return {"epochs": 1} if "epochs" in fields else {}


# ------------------------------------------------------------------------------------ one point

CLASSES_FOR = {0.1: (0,), 0.5: (0, 1, 2, 3, 4)}
"""a class-only method's request at a forget size: whole classes of the (balanced) pool"""


def class_request_for(method: str, fraction: float) -> tuple[int, ...]:
    """The classes a class-only method forgets at ``fraction`` (empty for every other method);
    a class-only method has no point at a size no set of whole classes makes (1 %)."""
    from forgetkit.methods import METHODS

    if method in (RETRAIN, FALW) or not METHODS.get(method).class_only:
        return ()
    if fraction not in CLASSES_FOR:
        raise ValueError(f"{method} forgets whole classes: no request of {fraction:.0%}")
    return CLASSES_FOR[fraction]

def _prepare(folder: Path, pool: int) -> Path:
    """Pool, held-out set and trained original of one pool size, saved once for all its points."""
    import torch

    from forgetkit.bench.workspace import _stratified_subsample
    from forgetkit.data import load_dataset
    from forgetkit.models import build_model
    from forgetkit.train import TrainRecipe, train_classifier

    path = folder / f"pool{pool}.pt"
    if path.is_file():
        return path
    bundle = load_dataset("fashion_mnist")
    train = bundle.train.subset(_stratified_subsample(bundle.train.y, pool, 0))
    held = bundle.test.subset(_stratified_subsample(bundle.test.y, HELDOUT, 0))
    torch.manual_seed(0)
    model = build_model(MODEL["name"], bundle.input_shape, bundle.num_classes, **MODEL["options"])
    recipe = TrainRecipe(epochs=ORIGINAL_EPOCHS, **RECIPE)
    train_classifier(model, train, recipe, 0, torch.device("cpu"), bundle.num_classes)
    tmp = path.with_suffix(".tmp")
    torch.save({"x": train.x, "y": train.y, "hx": held.x, "hy": held.y,
                "shape": tuple(bundle.input_shape), "classes": bundle.num_classes,
                "state": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def _memory_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def _load_pool(folder: Path, pool: int):
    import torch

    from forgetkit.data.base import Split
    from forgetkit.models import build_model

    saved = torch.load(_prepare(folder, pool), weights_only=True)
    shape, classes = saved["shape"], saved["classes"]
    build = lambda: build_model(MODEL["name"], shape, classes, **MODEL["options"])  # noqa: E731
    original = build()
    original.load_state_dict(saved["state"])
    return Split(saved["x"], saved["y"]), Split(saved["hx"], saved["hy"]), original, build, classes


def measure(folder: Path, method: str, pool: int, fraction: float) -> dict:
    """Unlearn (or retrain) one random request of ``fraction`` of a ``pool``-image pool."""
    import torch

    from forgetkit import api
    from forgetkit.data.requests import class_request, random_request
    from forgetkit.train import TrainRecipe, train_classifier

    train, held, original, build, classes = _load_pool(folder, pool)
    whole = class_request_for(method, fraction)
    forget = (class_request(train.y.numpy(), whole, classes) if whole else
              random_request(train.y.numpy(), fraction, 0)).indices
    torch.manual_seed(0)
    fresh = build()
    rss_before = _memory_kib("VmRSS")
    exact = _reset_peak()
    start, cpu_start = time.perf_counter(), time.process_time()
    if method == RETRAIN:
        retain = train.subset(np.setdiff1d(np.arange(len(train)), forget))
        train_classifier(fresh, retain, TrainRecipe(epochs=1, **RECIPE), 0, torch.device("cpu"), classes)
        seconds, options = time.perf_counter() - start, {"epochs": 1}
    else:
        name, weighting = (("rl", "falw") if method == FALW else (method, "uniform"))
        options = one_pass_options(name)
        result = api.unlearn(original, train, forget, name, heldout=held, weighting=weighting, seed=0,
                             device="cpu", forget_classes=whole, **options)
        seconds = result.seconds
    cpu_seconds = time.process_time() - cpu_start
    peak = _memory_kib("VmHWM") if exact else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "pool": pool, "fraction": fraction, "n_forget": int(len(forget)),
            "request": f"classes {list(whole)}" if whole else "random",
            "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3), "peak_rss_mib": round(peak / 1024, 1),
            "peak_extra_mib": round(max(peak - (rss_before or 0), 0) / 1024, 1) if exact else None,
            "options": options, "threads": torch.get_num_threads(), "status": "ok"}


# ------------------------------------------------------------------------- the resumable run

def _done(store: Path) -> list[dict]:
    if not store.is_file():
        return []
    rows = []
    for line in store.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill: that point runs again
                continue
    return rows


def _key(row: dict) -> tuple:
    return row["method"], row["pool"], row["fraction"]


def _commit() -> str:
    git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=Path(__file__).parent).stdout.strip()
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain") else "")


class _Timeout(Exception):
    pass


def _over_budget(signum, frame):
    raise _Timeout


def _release_freed_memory() -> None:
    """Hand freed heap back to the kernel so the next point's peak starts from what is live."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _has_point(method: str, fraction: float) -> bool:
    try:
        class_request_for(method, fraction)
        return True
    except ValueError:
        return False


def run_pool(args) -> None:
    """Every missing point of one pool size, in this one process (a fresh process per point costs
    more than most points on a loaded machine); each point is appended to the store when done."""
    store = Path(args.store)
    rows = _done(store)
    done = {_key(r) for r in rows}
    too_slow = {(r["method"], r["fraction"]) for r in rows if r["status"] != "ok"}
    commit, cpu = _commit(), platform.processor() or platform.machine()
    _load_pool(store.parent, args.pool)  # trains the original once, outside every point's timer
    signal.signal(signal.SIGPROF, _over_budget)
    for fraction in args.fractions:
        for method in args.methods or method_names():
            key = (method, args.pool, fraction)
            if key in done or (method, fraction) in too_slow or not _has_point(method, fraction):
                continue
            if time.process_time() > args.cpu_budget:
                print(f"CPU budget spent; stopping before {key}", flush=True)
                return
            _release_freed_memory()
            signal.setitimer(signal.ITIMER_PROF, args.point_timeout)
            try:
                row = measure(store.parent, method, args.pool, fraction)
            except _Timeout:
                row = {"method": method, "pool": args.pool, "fraction": fraction, "status": "timeout",
                       "cpu_seconds": args.point_timeout}
            except Exception as e:  # noqa: BLE001  one method's failure is a recorded point, not the end of the run
                row = {"method": method, "pool": args.pool, "fraction": fraction, "status": "error",
                       "error": f"{type(e).__name__}: {e}"}
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            row |= {"commit": commit, "cpu": cpu}
            with store.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run(args) -> None:
    """One process per pool size, smallest first, until ``--budget-min`` minutes of CPU are spent
    (CPU time, not wall time: on a shared machine the wall clock measures the neighbours)."""
    store = Path(args.store)
    store.parent.mkdir(parents=True, exist_ok=True)
    for pool in args.pools:
        left = args.budget_min * 60 - _children_cpu()
        if left <= 0:
            print(f"CPU budget of {args.budget_min} min spent; stopping before pool {pool}", flush=True)
            return
        cmd = [sys.executable, __file__, "pool", "--store", str(store), "--pool", str(pool),
               "--cpu-budget", str(left), "--point-timeout", str(args.point_timeout),
               "--fractions", *map(str, args.fractions)]
        subprocess.run(cmd + (["--methods", *args.methods] if args.methods else []), check=True)


# ------------------------------------------------------------------------------------ the report

def growth_exponents(rows: list[dict]) -> dict[tuple[str, float], float]:
    """Least-squares slope of log(CPU seconds) on log(pool) per (method, fraction), over ≥ 3 pools."""
    series: dict[tuple[str, float], list[tuple[int, float]]] = {}
    for r in rows:
        if r["status"] == "ok" and r["cpu_seconds"] > 0:
            series.setdefault((r["method"], r["fraction"]), []).append((r["pool"], r["cpu_seconds"]))
    out = {}
    for key, points in series.items():
        if len({p for p, _ in points}) >= 3:
            x, y = np.log([p for p, _ in points]), np.log([s for _, s in points])
            out[key] = float(np.polyfit(x, y, 1)[0])
    return out


def markdown(rows: list[dict]) -> str:
    ok = {_key(r): r for r in rows if r["status"] == "ok"}
    failed = {_key(r): r["status"] for r in rows if r["status"] != "ok"}
    exps = growth_exponents(rows)
    pools = sorted({r["pool"] for r in rows})
    fractions = sorted({r["fraction"] for r in rows})
    methods = [m for m in method_names() if any(r["method"] == m for r in rows)]
    largest = max((r["pool"] for r in ok.values() if r["method"] == RETRAIN), default=None)
    lines = ["Growth exponent (log-log slope of CPU seconds on pool size, over the pools measured); last "
             f"columns: CPU seconds at {largest or 0:,} images as a multiple of retraining's one epoch there:", "",
             "| method | " + " | ".join(f"exponent, forget {f:.0%}" for f in fractions) + " | "
             + " | ".join(f"× retrain, {f:.0%}" for f in fractions) + " |",
             "|---|" + "---|" * 2 * len(fractions)]
    for m in methods:
        cells = [f"{exps[(m, f)]:.2f}" if (m, f) in exps else "–" if _has_point(m, f) else "n/a" for f in fractions]
        for f in fractions:
            mine, base = ok.get((m, largest, f)), ok.get((RETRAIN, largest, f))
            cells.append(f"{mine['cpu_seconds'] / base['cpu_seconds']:.2f}" if mine and base else
                         "–" if _has_point(m, f) else "n/a")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    for f in fractions:
        lines += [f"**Forget {f:.0%}** — CPU seconds of one pass (peak MiB above the live memory) per pool size; exponent = log-log slope",
                  "", "| method | " + " | ".join(f"{p:,}" for p in pools) + " | exponent |",
                  "|---|" + "---|" * (len(pools) + 1)]
        for m in methods:
            cells = []
            for p in pools:
                r = ok.get((m, p, f))
                cells.append(f"{r['cpu_seconds']:.2f} ({r['peak_extra_mib']:.0f})" if r and r.get("peak_extra_mib") is not None
                             else f"{r['cpu_seconds']:.2f}" if r else failed.get((m, p, f), "–" if _has_point(m, f) else "n/a"))
            e = exps.get((m, f))
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {e:.2f} |" if e is not None else
                         f"| {m} | " + " | ".join(cells) + " | – |")
        lines.append("")
    faster = faster_than_retrain(rows)
    lines.append("Grows faster than retraining (exponent above retrain's by more than 0.1 at some forget size): "
                 + (", ".join(f"{m} ({', '.join(fs)})" for m, fs in faster.items()) or "none") + ".")
    return "\n".join(lines)


def faster_than_retrain(rows: list[dict], margin: float = 0.1) -> dict[str, list[str]]:
    exps = growth_exponents(rows)
    out: dict[str, list[str]] = {}
    for (m, f), e in sorted(exps.items()):
        base = exps.get((RETRAIN, f))
        if m != RETRAIN and base is not None and e > base + margin:
            out.setdefault(m, []).append(f"{f:.0%}: {e:.2f} vs {base:.2f}")
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = sorted({r["fraction"] for r in rows})
    pools = sorted({r["pool"] for r in rows if r["status"] == "ok"})
    methods = [m for m in method_names() if any(r["method"] == m and r["status"] == "ok" for r in rows)]
    colours = plt.get_cmap("tab20").colors
    style = {m: {"color": "black", "linewidth": 2.5, "linestyle": "-"} if m == RETRAIN else
             {"color": colours[i % 20], "linewidth": 1.2, "linestyle": ("-", "--", ":")[i // 20 % 3]}
             for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(fractions), figsize=(4.6 * len(fractions) + 2, 4.5), sharex=True, sharey=True, squeeze=False)
    for ax, f in zip(axes[0], fractions):
        for m in methods:
            pts = sorted((r["pool"], r["cpu_seconds"]) for r in rows
                         if r["method"] == m and r["fraction"] == f and r["status"] == "ok")
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=m, **style[m])
        ax.set(xscale="log", yscale="log", title=f"forget {f:.0%}", xlabel="training pool (images)")
        ax.set_xticks(pools, [f"{p // 1000}k" for p in pools])
        ax.minorticks_off()
    axes[0][0].set_ylabel("CPU seconds, one pass (1 thread)")
    handles = [plt.Line2D([], [], marker="o", markersize=3, **style[m]) for m in methods]
    fig.legend(handles, methods, fontsize=7, loc="center right", frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="measure every missing point into the store")
    p.add_argument("--store", required=True)
    p.add_argument("--pools", type=int, nargs="+", default=list(POOLS))
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    p.add_argument("--methods", nargs="+", help="default: retrain, every registered method, rl+falw")
    p.add_argument("--budget-min", type=float, default=45.0, help="start no point after this many minutes of CPU")
    p.add_argument("--point-timeout", type=float, default=120.0, help="CPU seconds a point may take")
    p = sub.add_parser("pool", help="(internal) the missing points of one pool size, in one process")
    p.add_argument("--store", required=True)
    p.add_argument("--pool", type=int, required=True)
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    p.add_argument("--methods", nargs="+")
    p.add_argument("--cpu-budget", type=float, required=True, help="CPU seconds after which no point starts")
    p.add_argument("--point-timeout", type=float, default=120.0)
    p = sub.add_parser("report", help="the Markdown table, exponents and plot of a store")
    p.add_argument("--store", required=True)
    p.add_argument("--plot", help="PNG path")
    a = ap.parse_args()
    if a.cmd == "pool":
        run_pool(a)
    elif a.cmd == "run":
        run(a)
    else:
        rows = _done(Path(a.store))
        print(markdown(rows))
        if a.plot:
            plot(rows, Path(a.plot))


if __name__ == "__main__":
    main()
