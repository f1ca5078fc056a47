"""``forgetkit merge OUT SRC ...``: one run directory from runs of the same config split by seed.

Two processes cannot share an output directory (each holds its lock), so a sweep is spread over
cores by running each seed into its own directory (``--set seeds=[k]``). Merging then gives the
directory one run of all seeds would have left: every row and its audit report, and an
``experiment.json`` planning every source's cells, so ``forgetkit report``, ``report
--leaderboard`` and a resumed ``forgetkit run`` over all seeds see them all.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..files import atomic_write
from .store import ResultStore, check_store_file, read_experiment

SPLITTABLE = ("seeds", "threads", "cache_dir")
"""config fields the runs may differ in: which seeds, and how each process ran"""


def read_run(run_dir: Path) -> dict:
    """The ``experiment.json`` of a finished or running run directory (an error names what is missing)."""
    meta_path = run_dir / "experiment.json"
    if not (run_dir / "results.sqlite").is_file() or not meta_path.is_file():
        raise ValueError(f"merge: {run_dir} is not a run directory (it needs results.sqlite and experiment.json "
                         "from `forgetkit run --out`)")
    meta = read_experiment(run_dir, ("name", "config"))
    if "planned_keys" not in meta:
        raise ValueError(f"merge: {meta_path} lists no planned cells; re-run that experiment with this version")
    return meta


def differing_fields(a: dict, b: dict) -> list[str]:
    """Top-level config fields in which two runs differ, beyond those a split may change."""
    return sorted(k for k in set(a) | set(b) if k not in SPLITTABLE and a.get(k) != b.get(k))


def merged_meta(metas: list[dict]) -> dict:
    """One experiment description for all ``metas``: the first one's config with every seed, and every
    planned cell once, in the order the runs listed them."""
    first = metas[0]
    keys = list(dict.fromkeys(k for m in metas for k in m["planned_keys"]))
    seeds = sorted({s for m in metas for s in m["config"].get("seeds", [])})
    return {**first, "config": {**first["config"], "seeds": seeds}, "planned_keys": keys}


def merge_runs(out: str | Path, sources: list[str | Path]) -> tuple[int, int]:
    """Copy the rows and audit reports of ``sources`` into ``out`` (created, or an existing run of the
    same experiment, whose rows take part too); returns (rows copied, cells planned).

    Everything is checked before anything is written: every source is a run directory of the same
    experiment and config up to :data:`SPLITTABLE`. A finished row is never replaced by a failed one.
    """
    from ..locks import DirectoryLock

    out = Path(out)
    sources = [Path(s) for s in sources]
    if not sources:
        raise ValueError("merge: give at least one source run directory")
    for s in sources:
        if s.resolve() == out.resolve():
            raise ValueError(f"merge: {s} is the output directory itself; list only the other runs")
    metas = [read_run(s) for s in sources]
    if (out / "experiment.json").exists():
        metas.insert(0, read_run(out))
        sources.insert(0, out)
    for src, meta in zip(sources[1:], metas[1:]):
        if meta["name"] != metas[0]["name"]:
            raise ValueError(f"merge: {src} holds experiment {meta['name']!r}, {sources[0]} holds "
                             f"{metas[0]['name']!r}; only runs of one config can be merged")
        diff = differing_fields(metas[0]["config"], meta["config"])
        if diff:
            hint = (" (a config with tune.recipes gains a -tuned method once its recipe exists: run each source "
                    "again after tuning, then merge)" if "methods" in diff else "")
            raise ValueError(f"merge: {src} and {sources[0]} differ in {', '.join(diff)}; only runs that differ "
                             f"in {', '.join(SPLITTABLE)} can be merged{hint}")
    for src in sources:  # every store readable before the merged one is created
        check_store_file(src / "results.sqlite", create=src == out)
    copied = 0
    with DirectoryLock(out):
        with ResultStore(out / "results.sqlite") as dst:
            for src in sources:
                if src == out:
                    continue
                copied += _copy_rows(src, dst)
                _copy_audits(src, out)
        meta = merged_meta(metas)
        atomic_write(out / "experiment.json", json.dumps(meta, indent=1))
    return copied, len(meta["planned_keys"])


def _copy_rows(src: Path, dst: ResultStore) -> int:
    n = 0
    with ResultStore(src / "results.sqlite", create=False) as store:
        for row in store.rows():
            if dst.has(row["key"]) or (row["status"] != "ok" and dst.status(row["key"]) is not None):
                continue
            fields = {k: row[k] for k in ("key", "experiment", "method", "weighting", "request", "seed", "status",
                                          "metrics", "params", "provenance", "error")}
            dst.put(**fields, artifacts=store.artifacts(row["key"]))
            n += 1
    return n


def _copy_audits(src: Path, out: Path) -> None:
    """Each row's audit report directory (``audits/<row>``), where ``out`` has none of that name."""
    if not (src / "audits").is_dir():
        return
    for report in (src / "audits").iterdir():
        target = out / "audits" / report.name
        if report.is_dir() and not target.exists():
            shutil.copytree(report, target)
