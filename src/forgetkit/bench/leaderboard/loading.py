"""The leaderboard's rows: one run directory becomes a :class:`Setting` of shapes, each holding
one :class:`Entry` per row label with its stored rows by seed."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...methods import METHODS
from ...unlearn.weightings import WEIGHTINGS
from ..grid import ORIGINAL, RETRAIN, paper_name, row_request_kind, weighting_name
from ..report import load_run
from ..store import read_experiment
from ..tune import TUNED_SUFFIX

DIRTY = "+dirty"
"""the suffix of a commit whose source had uncommitted changes: nobody can check that code out"""


@dataclass
class Entry:
    """One method row of one shape: its stored rows by seed."""

    label: str
    """the stored row label"""
    name: str
    """shown name: the paper's spelling, ``-tuned`` for a tuned row"""
    base: str
    """shown name of the method without tuning (the pair an untuned and a tuned row share)"""
    tuned: bool
    ok: dict[int, dict] = field(default_factory=dict)
    failed: dict[int, dict] = field(default_factory=dict)

    @property
    def is_reference(self) -> bool:
        return self.label in (ORIGINAL, RETRAIN)

    @property
    def dirty(self) -> bool:
        """Whether any of the row's seeds ran from uncommitted code (not reproducible, not ranked)."""
        return any(c.endswith(DIRTY) for c in self.commits())

    @property
    def ranked(self) -> bool:
        """Whether the row takes part in ranks and summaries: a method row from committed code."""
        return not self.is_reference and not self.dirty

    def errors(self) -> dict[int, str]:
        """seed → first line of the failed row's error."""
        return {s: str(r["error"] or "no message").splitlines()[0] for s, r in sorted(self.failed.items())}

    def gaps(self) -> dict[int, float]:
        """seed → Avg. Gap, for the seeds whose Retrain reference was there to compare with."""
        return {s: r["metrics"]["AvgGap"] for s, r in sorted(self.ok.items()) if "AvgGap" in r["metrics"]}

    def values(self, key: str) -> list[float]:
        """The metric over the row's finished seeds (a seed without it is skipped)."""
        return [float(r["metrics"][key]) for _, r in sorted(self.ok.items())
                if isinstance(r["metrics"].get(key), (int, float)) and math.isfinite(r["metrics"][key])]

    def timing(self) -> tuple[float | None, float | None]:
        """(mean unlearning time, mean Retrain time / mean unlearning time) over the row's seeds."""
        t, ref = self.values("time_s"), self.values("retrain_time_s")
        if not t:
            return None, None
        mean_t = float(np.mean(t))
        return mean_t, (float(np.mean(ref)) / mean_t if ref and mean_t > 0 else None)

    def recipes(self) -> list[str]:
        return sorted({str(r["params"]["recipe"]) for r in [*self.ok.values(), *self.failed.values()]
                       if r["params"].get("recipe")})

    def commits(self) -> list[str]:
        return sorted({str(r["provenance"].get("commit", "unknown"))
                       for r in [*self.ok.values(), *self.failed.values()]})


@dataclass
class Shape:
    name: str
    kind: str | None
    """request kind (``class``, ``longtail`` …); None when it cannot be told"""
    entries: dict[str, Entry] = field(default_factory=dict)


@dataclass
class Setting:
    """One run directory: one data/model setting."""

    name: str
    run_dir: Path
    description: str
    smoke: bool
    shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def tuned(self) -> bool:
        """Whether any row ran a tuned recipe (a setting run at reference defaults only has none)."""
        return any(e.tuned for s in self.shapes.values() for e in s.entries.values())

    @property
    def run_name(self) -> str:
        """The run directory's own name: generated pages name runs, never a machine's paths."""
        return Path(self.run_dir).name


def split_by_tuning(settings: list[Setting]) -> tuple[list[Setting], list[Setting]]:
    """(settings the summaries compare under equal tuning, settings run at reference defaults only).

    Once one setting has tuned rows, a setting without any stands apart: its equal-tuning league
    would be its defaults, and pooling it would count default rows as tuned ones."""
    tuned = [st for st in settings if st.tuned]
    return (tuned, [st for st in settings if not st.tuned]) if tuned else (settings, [])


def shown_name(label: str, has_recipe: bool) -> tuple[str, str, bool]:
    """(shown name, shown base name, tuned) of a row label: a registry key becomes its paper's
    name (``salun-tuned`` → ``SalUn-tuned``), a label the config chose stays as it is."""
    tuned = label.endswith(TUNED_SUFFIX) or has_recipe
    base = label[:-len(TUNED_SUFFIX)] if label.endswith(TUNED_SUFFIX) else label
    if base in METHODS:
        base = paper_name(base)
    elif base in WEIGHTINGS and base != "uniform":  # RL with FaLW's weights is what its paper calls FaLW
        base = weighting_name(base)
    return (base + TUNED_SUFFIX if tuned else base), base, tuned


def load_setting(run_dir: str | Path) -> Setting:
    """The rows of one run directory, grouped by shape and row label."""
    run_dir = Path(run_dir)
    marker = run_dir / "experiment.json"
    if not marker.exists():
        raise FileNotFoundError(f"{run_dir} holds no run (no experiment.json); give a directory made by "
                                "`forgetkit run --out DIR`")
    kind = read_experiment(run_dir, ()).get("experiment_type") or "forget"
    if kind != "forget":
        raise ValueError(f"{run_dir} is a {kind!r} run; the leaderboard ranks forget runs (experiment_type forget)")
    meta, rows, failed, _ = load_run(run_dir)
    if not rows and not failed:
        raise ValueError(f"{run_dir} has no finished rows yet; run `forgetkit run` with --out {run_dir} first")
    cfg = meta.get("config", {})
    specs = [s for s in cfg.get("requests", []) if s.get("role", "report") == "report"]
    named = [s["name"] for s in specs if s.get("name")]
    seen: list[str] = []
    for r in [*rows, *failed]:
        if r["request"] not in seen:
            seen.append(r["request"])
    order = {n: i for i, n in enumerate(named + [n for n in seen if n not in named])}
    prov = (rows or failed)[0]["provenance"]
    seeds = sorted({r["seed"] for r in [*rows, *failed]})
    desc = (f"{prov.get('dataset', cfg.get('dataset'))}, training pool {prov.get('n_train_pool', '?')} samples, "
            f"model {prov.get('model', cfg.get('model', {}).get('name'))}, seeds {seeds}")
    planned, done = len(meta.get("planned_keys", [])), len(rows) + len(failed)
    if done < planned:
        desc += f"; ⚠ unfinished run: {done} of {planned} planned cells have a row (re-run it to complete)"
    setting = Setting(meta["name"], run_dir, desc, bool(cfg.get("smoke")))
    recipe = {r["method"]: bool(r["params"].get("recipe")) for r in [*rows, *failed]}
    names = {lbl: shown_name(lbl, rec) for lbl, rec in recipe.items()}
    shown = [n[0] for n in names.values()]
    for lbl, (name, base, tuned) in names.items():  # two labels one spelling apart ("rl", "RL"): keep both as stored
        if shown.count(name) > 1:
            names[lbl] = (lbl, lbl.removesuffix(TUNED_SUFFIX), tuned)
    for r in sorted([*rows, *failed], key=lambda r: (order[r["request"]], r["seed"])):
        shape = setting.shapes.setdefault(r["request"], Shape(r["request"], row_request_kind(r, specs)))
        e = shape.entries.setdefault(r["method"], Entry(r["method"], *names[r["method"]]))
        (e.ok if r["status"] == "ok" else e.failed)[r["seed"]] = r
    return setting
