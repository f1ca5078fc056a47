"""Markdown report shaped like the FaLW paper's tables, plus PNG plots, rebuilt from the store."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .store import ResultStore

MAIN = ("FA", "RA", "TA", "MIA")
STANDARD = set(MAIN) | {"AvgGap", "time_s", "retrain_time_s", "speedup"}
REF_ORDER = {"original": 0, "retrain": 1}


def _fmt(values, digits=2) -> str:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _label(row) -> str:
    """'method + weighting', or the config's label alone when it names a single-weighting entry."""
    if row["weighting"] in ("-", "uniform") or row["params"].get("label_only"):
        return row["method"]
    return f"{row['method']} + {row['weighting']}"


def _order(label: str) -> tuple:
    return (REF_ORDER.get(label, 2), label)


def group_rows(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """request → display label → rows (one per seed)."""
    out: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        out[r["request"]][_label(r)].append(r)
    return out


def main_table(by_label: dict[str, list[dict]]) -> list[str]:
    ref = by_label.get("retrain", [])
    ref_mean = {k: np.mean([r["metrics"][k] for r in ref]) for k in MAIN} if ref else None
    lines = ["| Method | FA | RA | TA | MIA | Avg. Gap ↓ | Time (s) | Speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for label in sorted(by_label, key=_order):
        rs = by_label[label]
        cells = []
        for k in MAIN:
            vals = [r["metrics"][k] for r in rs]
            gap = f" ({abs(np.mean(vals) - ref_mean[k]):.2f})" if ref_mean and label != "retrain" else ""
            cells.append(_fmt(vals) + gap)
        gap = _fmt([r["metrics"].get("AvgGap") for r in rs]) if label != "retrain" else "0.00"
        time_ = _fmt([r["metrics"]["time_s"] for r in rs], 1)
        speed = "1.0×" if label == "retrain" else "–" if label == "original" else \
            f"{np.nanmean([r['metrics']['speedup'] for r in rs]):.1f}×"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {gap} | {time_} | {speed} |")
    return lines


def deviation_table(by_label) -> list[str]:
    groups = sorted({k[4:] for rs in by_label.values() for r in rs for k in r["metrics"] if k.startswith("dFA_")},
                    key=["head", "mid", "tail"].index)
    if not groups:
        return []
    lines = ["| Method | under (%) | faithful (%) | over (%) | " + " | ".join(f"ΔFA {g}" for g in groups) + " |",
             "|---|---|---|---|" + "---|" * len(groups)]
    for label in sorted(by_label, key=_order):
        if label == "retrain":
            continue
        rs = by_label[label]
        dev = [_fmt([r["metrics"].get(f"dev_{k}") for r in rs], 1) for k in ("under", "faithful", "over")]
        dfa = [_fmt([r["metrics"].get(f"dFA_{g}") for r in rs]) for g in groups]
        lines.append(f"| {label} | " + " | ".join(dev + dfa) + " |")
    return lines


def extra_table(by_label) -> list[str]:
    keys = sorted({k for rs in by_label.values() for r in rs for k, v in r["metrics"].items()
                   if k not in STANDARD and not k.startswith(("gap_", "dev_", "dFA_", "FA_"))})
    if not keys:
        return []
    lines = ["| Method | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for label in sorted(by_label, key=_order):
        vals = [format_values([r["metrics"].get(k) for r in by_label[label]]) for k in keys]
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    return lines


def format_values(values, digits: int = 2) -> str:
    """Mean ± sd of the numbers, or the distinct strings (e.g. MIA-NN's class pair), missing ones skipped."""
    values = [v for v in values if v is not None]
    if any(isinstance(v, str) for v in values):
        return ", ".join(sorted({str(v) for v in values}))
    return _fmt(values, digits)


def paired_table(by_label) -> list[str]:
    """Each weighted variant "M + w" against its own base M, paired on (request, seed).

    A weighting is judged by how it changes *its* base method on the same request, seed and
    original model; comparing unpaired means would mix that effect with seed-to-seed spread.
    """
    def gap(rs):
        return {(r["request"], r["seed"]): r["metrics"].get("AvgGap") for r in rs}

    lines = []
    for label in sorted(by_label, key=_order):
        base = label.split(" + ")[0]
        if " + " not in label or base not in by_label:
            continue
        mine, theirs = gap(by_label[label]), gap(by_label[base])
        diffs = [mine[k] - theirs[k] for k in sorted(mine.keys() & theirs.keys())
                 if mine[k] is not None and theirs[k] is not None]
        if diffs:
            wins = sum(d < 0 for d in diffs)
            lines.append(f"| {label} − {base} | {_fmt(diffs)} | {wins} / {len(diffs)} | "
                         + ", ".join(f"{d:+.2f}" for d in diffs) + " |")
    if not lines:
        return []
    return ["Paired Avg. Gap difference, weighted − base, per (request, seed) (negative = the weighting helped):", "",
            "| Comparison | mean ± sd | better in | differences |", "|---|---|---|---|"] + lines + [""]


def collapse_warnings(rows: list[dict], num_classes: int | None) -> list[str]:
    """Flag models whose RA or TA fell towards chance (a model that 'forgot' everything)."""
    if not num_classes:
        return []
    chance = 100.0 / num_classes
    out = []
    for r in rows:
        m = r["metrics"]
        for k in ("RA", "TA"):
            if m.get(k) is not None and m[k] < 1.5 * chance + 5:
                out.append(f"- ⚠ **{_label(r)}** (request {r['request']}, seed {r['seed']}): {k} = {m[k]:.1f}% "
                           f"is near chance ({chance:.1f}%) — the model collapsed rather than unlearned.")
    return out


def load_run(out_dir: str | Path, with_artifacts: bool = False) -> tuple[dict, list[dict], list[dict], dict]:
    """(experiment meta, ok rows, failed rows, artifacts by key) of the cells the saved config plans."""
    out_dir = Path(out_dir)
    db = out_dir / "results.sqlite"
    if not db.exists():
        raise FileNotFoundError(f"no results store at {db}; run an experiment with --out {out_dir} first")
    meta_path = out_dir / "experiment.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"name": out_dir.name, "config": {}}
    keys = _planned_keys(meta)
    with ResultStore(db) as store:
        rows = [r for r in store.rows(status="ok") if keys is None or r["key"] in keys]
        failed = [r for r in store.rows(status="failed") if keys is None or r["key"] in keys]
        artifacts = {r["key"]: store.artifacts(r["key"]) for r in rows} if with_artifacts else {}
    return meta, rows, failed, artifacts


def write_report(out_dir: str | Path) -> Path:
    """(Re)build ``report.md`` and plots from ``results.sqlite`` in ``out_dir``."""
    out_dir = Path(out_dir)
    meta, rows, failed, artifacts = load_run(out_dir, with_artifacts=True)
    num_classes = _num_classes(rows, artifacts)
    lines = [f"# forgetkit report: {meta['name']}", ""]
    if rows:
        p = rows[0]["provenance"]
        seeds = sorted({r["seed"] for r in rows})
        lines += [f"Data: **{p.get('dataset')}** ({p.get('source', '')}), training pool {p.get('n_train_pool')} samples; "
                  f"model **{p.get('model')}**; seeds {seeds}; device {p.get('device')}; torch {p.get('torch')}; "
                  f"commit `{p.get('commit')}`.", "",
                  "Each cell: mean ± sd over seeds; (gap to Retrain) in parentheses. MIA is SalUn's MIA-Efficacy. "
                  "Avg. Gap = mean |metric − Retrain| over FA, RA, TA, MIA (lower is better).", ""]
    grouped = group_rows(rows)
    if len(grouped) > 1:
        pooled: dict[str, list[dict]] = defaultdict(list)
        for by_label in grouped.values():
            for label, rs in by_label.items():
                pooled[label] += rs
        lines += [f"## Mean over all {len(grouped)} forget requests", "",
                  "Each cell: mean ± sd over requests and seeds (the shape of TRW's Table 2).", ""]
        lines += main_table(pooled) + [""] + paired_table(pooled)
        lines += ["Other metrics:", ""] + extra_table(pooled) + [""] if extra_table(pooled) else []
    for request, by_label in sorted(grouped.items()):
        lines += [f"## Forget request `{request}`", ""] + main_table(by_label) + [""] + paired_table(by_label)
        dev = deviation_table(by_label)
        if dev:
            lines += ["Unlearning deviation (FaLW Def. 1, share of forget samples) and ΔFA (method − Retrain) "
                      "per head/mid/tail group:", ""] + dev + [""]
        extra = extra_table(by_label)
        if extra:
            lines += ["Other metrics:", ""] + extra + [""]
        lines += _plots(out_dir, request, by_label, artifacts)
    warnings = collapse_warnings(rows, num_classes)
    if warnings:
        lines += ["## Warnings", ""] + warnings + [""]
    if failed:
        lines += ["## Failed runs", "", "| Method | Request | Seed | Reason |", "|---|---|---|---|"]
        lines += [f"| {_label(r)} | {r['request']} | {r['seed']} | {str(r['error']).splitlines()[0]} |" for r in failed]
        lines.append("")
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def _planned_keys(meta: dict) -> set[str] | None:
    """Keys of the cells the saved config plans, so rows left by an edited config are not mixed in."""
    if not meta.get("config"):
        return None
    from .config import parse_config
    from .runner import plan

    return {c.key for c in plan(parse_config(meta["config"]))}


def _num_classes(rows, artifacts) -> int | None:
    labels = [max(a.get("forget_labels") or [0]) for a in artifacts.values()]
    groups = [c for a in artifacts.values() for g in (a.get("groups") or {}).values() for c in g]
    return (max(labels + groups) + 1) if (labels or groups) else None


def _plots(out_dir: Path, request: str, by_label, artifacts) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = {label: min(rs, key=lambda r: r["seed"]) for label, rs in by_label.items()}
    if "retrain" not in first:
        return []
    labels = [lbl for lbl in sorted(first, key=_order) if lbl != "retrain"]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in request)
    lines = []
    ref_probs = np.asarray(artifacts[first["retrain"]["key"]].get("forget_probs", []))
    if labels and ref_probs.size:
        cols = min(4, len(labels))
        rows_n = -(-len(labels) // cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.6 * rows_n), squeeze=False)
        bins = np.linspace(0, 1, 21)
        for ax, label in zip(axes.flat, labels):
            ax.hist(ref_probs, bins, alpha=0.5, label="Retrain", color="tab:gray")
            ax.hist(np.asarray(artifacts[first[label]["key"]]["forget_probs"]), bins, alpha=0.5, label=label)
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("p(true class) on forget set", fontsize=8)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(labels):]:
            ax.axis("off")
        fig.tight_layout()
        name = f"probs_{safe}.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        lines += [f"![true-class probability histograms]({name})", ""]
    groups = [g for g in ("head", "mid", "tail") if any(f"dFA_{g}" in first[lbl]["metrics"] for lbl in labels)]
    if groups and labels:
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(labels), 3))
        width = 0.8 / len(groups)
        for i, g in enumerate(groups):
            vals = [np.mean([r["metrics"].get(f"dFA_{g}", np.nan) for r in by_label[lbl]]) for lbl in labels]
            ax.bar(np.arange(len(labels)) + i * width, vals, width, label=g)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(labels)) + width * (len(groups) - 1) / 2, labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("ΔFA vs Retrain (points)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = f"dfa_{safe}.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        lines += [f"![head/mid/tail ΔFA]({name})", ""]
    lines += _confusion_plot(out_dir, safe, by_label, plt)
    return lines


def _confusion_plot(out_dir: Path, safe: str, by_label, plt) -> list[str]:
    """Where the forgotten class's test images go (``forget_confusion``): one heatmap row per method,
    Retrain first, so a method that scatters the class is visible next to one that follows Retrain."""
    keys = sorted({k for rs in by_label.values() for r in rs for k in r["metrics"] if k.startswith("conf_to_")})
    if not keys or "retrain" not in by_label:
        return []
    labels = sorted(by_label, key=_order)
    share = np.array([[np.mean([r["metrics"].get(k, np.nan) for r in by_label[lbl]]) for k in keys] for lbl in labels])
    fig, ax = plt.subplots(figsize=(1.5 + 0.75 * len(keys), 0.9 + 0.32 * len(labels)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for (i, j), v in np.ndenumerate(share):
        if v >= 5:
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v > 60 else "black")
    ax.set_xticks(range(len(keys)), [k[len("conf_to_"):] for k in keys], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("forgotten-class test images predicted as … (%)", fontsize=9)
    fig.tight_layout()
    name = f"confusion_{safe}.png"
    fig.savefig(out_dir / name, dpi=90)
    plt.close(fig)
    return [f"![where the forgotten class went]({name})", ""]
