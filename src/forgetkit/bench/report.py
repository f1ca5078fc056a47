"""Markdown report shaped like the FaLW paper's tables, plus PNG plots, rebuilt from the store."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..files import safe_name
from .derived import with_derived
from .glance import NOISE_MARK, closest, first_screen, verdict_lines
from .grid import ORIGINAL, RETRAIN
from .intervals import PLUS_MINUS, fmt_ci
from .papers import paper_lines
from .store import ResultStore, read_experiment

MAIN = ("FA", "RA", "TA", "MIA")
STANDARD = set(MAIN) | {"AvgGap", "time_s", "retrain_time_s", "speedup", "n_forget", "n_test"}
REF_ORDER = {ORIGINAL: 0, RETRAIN: 1}


def _fmt(values, digits=2) -> str:
    return fmt_ci(values, digits)


def _label(row) -> str:
    """The row's name as planned (:func:`forgetkit.bench.grid.cell_label`): papers' spelling."""
    return row["method"]


def _order(label: str) -> tuple:
    return (REF_ORDER.get(label, 2), label)


def group_rows(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """request → display label → rows (one per seed)."""
    out: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        out[r["request"]][_label(r)].append(r)
    return out


def main_table(by_label: dict[str, list[dict]]) -> list[str]:
    """FA/RA/TA/MIA mean ± 95 % interval; in parentheses the mean over seeds of |metric − Retrain|
    on the same seed, so the four parenthesised gaps average exactly to the Avg. Gap beside them.
    Methods within seed noise of the closest to Retrain are marked."""
    lines = ["| Method | FA | RA | TA | MIA | Avg. Gap ↓ | Time (s) | Speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    best, noise = closest(by_label)
    for label in sorted(by_label, key=_order):
        rs = by_label[label]
        cells = []
        for k in MAIN:
            gaps = [r["metrics"].get(f"gap_{k}") for r in rs]
            gap = f" ({_fmt_mean(gaps)})" if label != RETRAIN and any(g is not None for g in gaps) else ""
            cells.append(_fmt([r["metrics"][k] for r in rs]) + gap)
        gap = _fmt([r["metrics"].get("AvgGap") for r in rs]) if label != RETRAIN else "0.00"
        time_ = _fmt([r["metrics"]["time_s"] for r in rs], 1)
        speeds = [r["metrics"].get("speedup") for r in rs if r["metrics"].get("speedup") is not None]
        speed = "1.0×" if label == RETRAIN else "–" if not speeds else f"{np.nanmean(speeds):.1f}×"
        shown = f"{label} {NOISE_MARK}" if noise.get(label) and label != best else label
        lines.append(f"| {shown} | " + " | ".join(cells) + f" | {gap} | {time_} | {speed} |")
    if any(v and lbl != best for lbl, v in noise.items()):
        lines += ["", f"{NOISE_MARK}: within seed noise of {best}, the closest to Retrain (paired t-test p ≥ 0.05 "
                  "over shared seeds, or overlapping 95 % intervals)."]
    return lines


def _fmt_mean(values, digits: int = 2) -> str:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return f"{np.mean(v):.{digits}f}" if v else "–"


def verdict(by_label: dict[str, list[dict]], num_classes: int | None) -> list[str]:
    """The lines a reader wants first: who came closest to Retrain (and by how much, against seed
    noise), who did worse than leaving the model as it was, and who collapsed."""
    out = verdict_lines(by_label)
    if not out:
        return []
    gaps = {lbl: np.mean([r["metrics"]["AvgGap"] for r in rs]) for lbl, rs in by_label.items()
            if lbl != RETRAIN and rs and all("AvgGap" in r["metrics"] for r in rs)}
    methods = {lbl: g for lbl, g in gaps.items() if lbl != ORIGINAL}
    if ORIGINAL in gaps:
        worse = [f"{lbl} ({methods[lbl]:.2f})" for lbl in sorted(methods, key=methods.get)
                 if methods[lbl] > gaps[ORIGINAL]]
        out.append(f"- **Worse than not unlearning** (Original's Avg. Gap {gaps[ORIGINAL]:.2f}): "
                   + (", ".join(worse) if worse else "none") + ".")
    collapsed = sorted({_label(r) for rs in by_label.values() for r in rs if _collapsed(r, num_classes)})
    out.append("- **Collapsed** (RA or TA near chance): " + (", ".join(collapsed) if collapsed else "none") + ".")
    return out + [""]


def _collapsed(row, num_classes: int | None) -> list[str]:
    if not num_classes:
        return []
    chance = 100.0 / num_classes
    return [k for k in ("RA", "TA") if row["metrics"].get(k) is not None and row["metrics"][k] < 1.5 * chance + 5]


def deviation_table(by_label) -> list[str]:
    groups = sorted({k[4:] for rs in by_label.values() for r in rs for k in r["metrics"] if k.startswith("dFA_")},
                    key=["head", "mid", "tail"].index)
    if not groups:
        return []
    lines = ["| Method | under (%) | faithful (%) | over (%) | " + " | ".join(f"ΔFA {g}" for g in groups) + " |",
             "|---|---|---|---|" + "---|" * len(groups)]
    for label in sorted(by_label, key=_order):
        if label == RETRAIN:
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
    """Mean ± 95 % interval of the numbers, or the distinct strings (e.g. MIA-NN's class pair), missing ones skipped."""
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
        base = by_label[label][0]["params"].get("base_label", label)
        if base == label or base not in by_label:
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
    return ["Paired Avg. Gap difference, weighted variant − its base method, per (request, seed) "
            "(negative = the weighting helped):", "",
            "| Comparison | mean ± 95 % CI | better in | differences |", "|---|---|---|---|"] + lines + [""]


def collapse_warnings(rows: list[dict], num_classes: int | None) -> list[str]:
    """Flag models whose RA or TA fell towards chance (a model that 'forgot' everything)."""
    out = []
    for r in rows:
        for k in _collapsed(r, num_classes):
            out.append(f"- ⚠ **{_label(r)}** (request {r['request']}, seed {r['seed']}): {k} = {r['metrics'][k]:.1f}% "
                       f"is near chance ({100.0 / num_classes:.1f}%) — the model collapsed rather than unlearned.")
    return out


def load_run(out_dir: str | Path, with_artifacts: bool = False) -> tuple[dict, list[dict], list[dict], dict]:
    """(experiment meta, ok rows with derived measures, failed rows, artifacts by key) of the cells
    the run planned (keys saved in ``experiment.json``, so rows of an edited config are not mixed in)."""
    out_dir = Path(out_dir)
    db = out_dir / "results.sqlite"
    if not db.exists():
        raise FileNotFoundError(f"no results store at {db}; run an experiment with --out {out_dir} first")
    meta_path = out_dir / "experiment.json"
    meta = read_experiment(out_dir) if meta_path.exists() else {"name": out_dir.name, "config": {}}
    keys = set(meta["planned_keys"]) if "planned_keys" in meta else None
    with ResultStore(db, create=False) as store:
        rows = [r for r in store.rows(status="ok") if keys is None or r["key"] in keys]
        failed = [r for r in store.rows(status="failed") if keys is None or r["key"] in keys]
        artifacts = {r["key"]: store.artifacts(r["key"]) for r in rows}
    tau = meta.get("config", {}).get("metrics", {}).get("deviation_tau", 0.05)
    return meta, with_derived(rows, artifacts, tau), failed, artifacts if with_artifacts else {}


def write_report(out_dir: str | Path) -> Path:
    """(Re)build ``report.md`` and plots from ``results.sqlite`` in ``out_dir``."""
    out_dir = Path(out_dir)
    meta, rows, failed, artifacts = load_run(out_dir, with_artifacts=True)
    num_classes = _num_classes(rows)
    smoke = meta.get("config", {}).get("smoke", False)
    lines = [f"# forgetkit report: {meta['name']}" + (" (smoke run)" if smoke else ""), ""]
    if smoke:
        lines += ["> **Smoke run**: data, epochs and budgets were shrunk by `--smoke` to check that the "
                  "configuration works. These numbers are not results.", ""]
    explain = []
    if rows:
        p = rows[0]["provenance"]
        seeds = sorted({r["seed"] for r in rows})
        recipes = sorted({r["params"].get("recipe") for r in rows if r["params"].get("recipe")})
        lines += [f"Data: **{p.get('dataset')}** ({p.get('source', '')}), training pool {p.get('n_train_pool')} samples; "
                  f"model **{p.get('model')}**; seeds {seeds}; device {p.get('device')}, {p.get('threads')} torch "
                  f"thread(s); torch {p.get('torch')}; commit `{p.get('commit')}`.", ""]
        if recipes:
            lines += ["Tuned recipes: " + ", ".join(f"`{x}`" for x in recipes), ""]
        explain = [f"Each cell: {PLUS_MINUS}. In parentheses: the mean over seeds of |metric − Retrain on "
                  "the same seed|; Avg. Gap is the mean of those four (lower is better). MIA is SalUn's "
                  "MIA-Efficacy. For whole-class requests TA and MIA use the test set without the forgotten "
                  "classes (SalUn's protocol); otherwise the whole test set.", ""]
    grouped = group_rows(rows)
    pooled: dict[str, list[dict]] = defaultdict(list)
    for by_label in grouped.values():
        for label, rs in by_label.items():
            pooled[label] += rs
    scope = f"all {len(grouped)} forget requests" if len(grouped) > 1 else f"request {next(iter(grouped), '')}"
    with ResultStore(out_dir / "results.sqlite") as store:
        reaudits = store.audits()
    lines += first_screen(pooled, verdict(pooled, num_classes), out_dir, scope, reaudits) + explain
    lines += paper_lines(out_dir, grouped)  # a paper preset's published numbers beside ours
    if len(grouped) > 1:
        lines += [f"## Mean over all {len(grouped)} forget requests", "",
                  "Each cell over requests and seeds (the shape of TRW's Table 2): mean ± half-width of the 95 % "
                  "Student-t interval over the (request, seed) pairs.", ""]
        lines += verdict(pooled, num_classes) + main_table(pooled) + [""] + paired_table(pooled)
        lines += ["Other metrics:", ""] + extra_table(pooled) + [""] if extra_table(pooled) else []
    for request, by_label in sorted(grouped.items()):
        lines += [f"## Forget request `{request}`", "", _request_line(by_label), ""]
        lines += (verdict(by_label, num_classes) if len(grouped) > 1 else []) + main_table(by_label) + [""]
        lines += paired_table(by_label)
        dev = deviation_table(by_label)
        if dev:
            lines += ["Unlearning deviation (FaLW Def. 1, share of forget samples) and ΔFA (method − Retrain) "
                      "per head/mid/tail group:", ""] + dev + [""]
        extra = extra_table(by_label)
        if extra:
            lines += ["Other metrics:", ""] + extra + [""]
        lines += _plots(out_dir, request, by_label, artifacts)
    audits = _audit_pages(out_dir, rows, artifacts, reaudits, figure=not smoke)
    if audits:
        lines += ["## Deletion audits (no retraining)", "",
                  "Does each model's forget set look like unseen data of its classes? One page per row "
                  "(`metrics.audit: true`; what it can and cannot show is on each page):", ""]
        lines += [f"- [{a.parent.name}]({a.relative_to(out_dir).as_posix()})" for a in audits] + [""]
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


def _audit_pages(out_dir: Path, rows: list[dict], artifacts: dict, reaudits: dict[str, dict],
                 figure: bool = True) -> list[Path]:
    """Render each audited row's page from the store (its newest re-audit if any) into
    ``audits/<row>/``; rows stored before pages were rendered here keep the page written then.
    ``figure=False`` (smoke runs) leaves each page's histograms out."""
    from ..audit.report import write_files
    from ..audit.runs import page_name, render_row

    originals = {(r["request"], r["seed"]): r["key"] for r in rows if r["method"] == ORIGINAL}
    for r in rows:
        a = artifacts.get(r["key"], {})
        if "audit" not in a or "audit_page" not in a:
            continue
        orig = originals.get((r["request"], r["seed"]))
        record = reaudits.get(r["key"], {}).get("audit")
        write_files(out_dir / "audits" / page_name(r, a),
                    render_row(r, a, None if orig is None else artifacts.get(orig), result=record, figure=figure))
    return sorted((out_dir / "audits").glob("*/audit.md")) if (out_dir / "audits").is_dir() else []


def _request_line(by_label) -> str:
    rs = [r for rows in by_label.values() for r in rows]
    sizes = sorted({int(r["metrics"]["n_forget"]) for r in rs if "n_forget" in r["metrics"]})
    tests = sorted({int(r["metrics"]["n_test"]) for r in rs if "n_test" in r["metrics"]})
    which = {r["params"].get("test_set") for r in rs if r["params"].get("test_set")}
    return (f"Forget set: {', '.join(map(str, sizes)) or '?'} samples; test set: {', '.join(map(str, tests)) or '?'} "
            f"samples ({', '.join(sorted(which)) or 'whole'}).")


def _num_classes(rows) -> int | None:
    """Classes of the dataset, as each row's provenance records it (a class request's forget
    labels alone would say 1, and flag every row as collapsed)."""
    counts = {r["provenance"].get("num_classes") for r in rows} - {None}
    return max(counts) if counts else None


def _plots(out_dir: Path, request: str, by_label, artifacts) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = {label: min(rs, key=lambda r: r["seed"]) for label, rs in by_label.items()}
    if RETRAIN not in first:
        return []
    labels = [lbl for lbl in sorted(first, key=_order) if lbl != RETRAIN]
    safe = safe_name(request)
    lines = []
    ref_probs = np.asarray(artifacts[first[RETRAIN]["key"]].get("forget_probs", []))
    if labels and ref_probs.size:
        cols = min(4, len(labels))
        rows_n = -(-len(labels) // cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(3.6 * cols, 3.0 * rows_n + 0.6), squeeze=False)
        bins = np.linspace(0, 1, 21)
        for ax, label in zip(axes.flat, labels):
            ax.hist(ref_probs, bins, alpha=0.5, label="Retrain", color="tab:gray")
            ax.hist(np.asarray(artifacts[first[label]["key"]]["forget_probs"]), bins, alpha=0.5, label=label)
            ax.set_title(label, fontsize=12)
            ax.set_xlabel("p(true class)", fontsize=11)
            ax.set_ylabel("forget samples", fontsize=11)
            ax.tick_params(labelsize=9)
            ax.legend(fontsize=9)
        for ax in list(axes.flat)[len(labels):]:
            ax.axis("off")
        fig.suptitle(f"Forget-set true-class probability, each method vs Retrain ({request})", fontsize=13)
        fig.tight_layout()
        name = f"probs_{safe}.png"
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        lines += [f"![true-class probability histograms]({name})", ""]
    groups = [g for g in ("head", "mid", "tail") if any(f"dFA_{g}" in first[lbl]["metrics"] for lbl in labels)]
    if groups and labels:
        fig, ax = plt.subplots(figsize=(2.0 + 1.2 * len(labels), 4))
        width = 0.8 / len(groups)
        for i, g in enumerate(groups):
            vals = [np.mean([r["metrics"].get(f"dFA_{g}", np.nan) for r in by_label[lbl]]) for lbl in labels]
            ax.bar(np.arange(len(labels)) + i * width, vals, width, label=g)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(labels)) + width * (len(groups) - 1) / 2, labels, rotation=30, ha="right", fontsize=10)
        ax.set_ylabel("ΔFA vs Retrain (points)", fontsize=11)
        ax.set_title(f"Forget accuracy minus Retrain's, per head/mid/tail group ({request})", fontsize=12)
        ax.legend(fontsize=10, title="group")
        fig.tight_layout()
        name = f"dfa_{safe}.png"
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        lines += [f"![head/mid/tail ΔFA]({name})", ""]
    lines += _confusion_plot(out_dir, safe, by_label, plt)
    return lines


def _confusion_plot(out_dir: Path, safe: str, by_label, plt) -> list[str]:
    """Where the forgotten class's test images go (``forget_confusion``): one heatmap row per method,
    Retrain first, so a method that scatters the class is visible next to one that follows Retrain."""
    keys = sorted({k for rs in by_label.values() for r in rs for k in r["metrics"] if k.startswith("conf_to_")})
    if not keys or RETRAIN not in by_label:
        return []
    labels = sorted(by_label, key=_order)
    share = np.array([[np.mean([r["metrics"].get(k, np.nan) for r in by_label[lbl]]) for k in keys] for lbl in labels])
    fig, ax = plt.subplots(figsize=(2.5 + 0.85 * len(keys), 1.6 + 0.4 * len(labels)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for (i, j), v in np.ndenumerate(share):
        if v >= 5:
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=9, color="white" if v > 60 else "black")
    ax.set_xticks(range(len(keys)), [k[len("conf_to_"):] for k in keys], rotation=35, ha="right", fontsize=10)
    ax.set_yticks(range(len(labels)), labels, fontsize=10)
    ax.set_xlabel("predicted class", fontsize=11)
    ax.set_title("Where the forgotten class's test images go (% predicted as each class)", fontsize=12)
    fig.tight_layout()
    name = f"confusion_{safe}.png"
    fig.savefig(out_dir / name, dpi=120)
    plt.close(fig)
    return [f"![where the forgotten class went]({name})", ""]
