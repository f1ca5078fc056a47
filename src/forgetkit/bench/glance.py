"""The run report's first screen: which method came closest to Retrain and by how much against seed
noise, what the retrain-free audit says of each row, and one figure that tells the story.

A reader decides from this screen whether unlearning worked here; the tables below it are the
evidence. Every difference is set against the spread over seeds (:mod:`.intervals`), so a lead
smaller than the noise reads as a tie, and a run with one seed says that no spread was measured.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .grid import ORIGINAL, RETRAIN
from .intervals import ONE_SEED, fmt_ci, paired_p, t_interval, within_noise

NOISE_MARK = "≈"
"""marks a method within seed noise of the one closest to Retrain"""


def gaps_by_pair(rows: list[dict]) -> dict[tuple[str, int], float]:
    """(request, seed) → Avg. Gap: the pairs two methods share are the same request on the same
    seed (same original model, same forget set), so their difference is a paired one."""
    return {(r["request"], r["seed"]): float(r["metrics"]["AvgGap"]) for r in rows if "AvgGap" in r["metrics"]}


def closest(by_label: dict[str, list[dict]]) -> tuple[str | None, dict[str, bool | None]]:
    """(the method with the lowest mean Avg. Gap, label → within seed noise of it); Original and
    Retrain are references, not methods."""
    gaps = {lbl: gaps_by_pair(rs) for lbl, rs in by_label.items() if lbl not in (ORIGINAL, RETRAIN)}
    gaps = {lbl: g for lbl, g in gaps.items() if g}
    if not gaps:
        return None, {}
    best = min(gaps, key=lambda k: (np.mean(list(gaps[k].values())), k))
    return best, {lbl: True if lbl == best else within_noise(gaps[best], g) for lbl, g in gaps.items()}


def verdict_lines(by_label: dict[str, list[dict]]) -> list[str]:
    """Closest to Retrain, with its 95 % interval, its lead over the runner-up against seed noise,
    and how far the untouched model is: the scale on which "close" means something."""
    best, noise = closest(by_label)
    if best is None:
        return []
    means = {lbl: float(np.mean(list(gaps_by_pair(by_label[lbl]).values()))) for lbl in noise}
    ranked = sorted(means, key=lambda k: (means[k], k))
    mine = gaps_by_pair(by_label[best])
    line = f"- **Closest to Retrain: {best}**, Avg. Gap {fmt_ci(list(mine.values()))}"
    if ORIGINAL in by_label and gaps_by_pair(by_label[ORIGINAL]):
        line += f" (the untouched Original: {fmt_ci(list(gaps_by_pair(by_label[ORIGINAL]).values()))})"
    out = [line + "."]
    if len(ranked) > 1:
        nxt = ranked[1]
        theirs = gaps_by_pair(by_label[nxt])
        shared = sorted(mine.keys() & theirs.keys())
        p = paired_p([theirs[k] for k in shared], [mine[k] for k in shared]) if shared else None
        lead = f"{means[nxt] - means[best]:.2f} below the next, {nxt}"
        if noise[nxt] is None:
            out.append(f"- Its lead: {lead}; one seed, so no spread was measured: this lead may be seed noise.")
        elif noise[nxt]:
            how = f"paired t-test over {len(shared)} seeds: p = {p:.2f}" if p is not None else "95 % intervals overlap"
            out.append(f"- Its lead: {lead}, **within seed noise** ({how}).")
        else:
            how = f"paired t-test over {len(shared)} seeds: p = {p:.3f}" if p is not None else "95 % intervals apart"
            out.append(f"- Its lead: {lead}, **beyond seed noise** ({how}).")
        if any(noise[lbl] is not None for lbl in ranked[1:]):
            out.append(f"- Within seed noise of {best} (paired t-test p ≥ 0.05; few seeds make this test weak): "
                       + (", ".join(lbl for lbl in ranked[1:] if noise[lbl]) or "none") + ".")
    return out


def audit_lines(by_label: dict[str, list[dict]], reaudits: dict[str, dict] | None = None) -> list[str]:
    """One line per row from the audit data the run stored (``metrics.audit: true``; a row's newest
    re-audit in ``reaudits``, row key → record, wins): the verdict on each seed and the headline
    AUC, with no retrained model involved."""
    out = []
    for label, rs in by_label.items():
        heads = [(reaudits or {}).get(r.get("key"), r["metrics"]) for r in rs]
        verdicts = Counter(h["audit_verdict"] for h in heads if h.get("audit_verdict"))
        if not verdicts:
            continue
        aucs = [h.get("audit_target_auc", h.get("audit_auc")) for h in heads]
        said = ", ".join(f"{v} on {n} of {len(rs)} seed(s)" for v, n in verdicts.most_common())
        out.append(f"- **{label}**: {said} (AUC {fmt_ci(aucs)})")
    if not out:
        return []
    return ["What the deletion audit says without retraining, one line per row (AUC: how often a deleted "
            "sample looks more familiar to the model than an unseen one; 0.5 = like unseen data, as after "
            "retraining; details on each row's audit page below):", "", *out, ""]


def gap_figure(by_label: dict[str, list[dict]], path: Path, title: str) -> bool:
    """Per-row Avg. Gap to Retrain as bars with 95 % intervals, the untouched Original's gap as a
    dashed line: how much each method closed of the distance that not unlearning leaves. False
    when there is nothing to draw."""
    labels = [lbl for lbl in by_label if lbl != RETRAIN and gaps_by_pair(by_label[lbl])]
    if not labels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means, halves = [], []
    for lbl in labels:
        mean, half = t_interval(list(gaps_by_pair(by_label[lbl]).values()))
        means.append(mean)
        halves.append(half or 0.0)
    order = sorted(range(len(labels)), key=lambda i: means[i])
    best, noise = closest(by_label)
    fig, ax = plt.subplots(figsize=(2.0 + 0.9 * len(labels), 3.8))
    colours = ["tab:gray" if labels[i] == ORIGINAL else "tab:green" if noise.get(labels[i]) else "tab:blue"
               for i in order]
    ax.bar(range(len(order)), [means[i] for i in order], yerr=[halves[i] for i in order], capsize=4,
           color=colours)
    if ORIGINAL in labels:
        ax.axhline(means[labels.index(ORIGINAL)], color="tab:gray", ls="--", lw=1, label="Original (not unlearned)")
        ax.legend(fontsize=9)
    ax.set_xticks(range(len(order)), [labels[i] for i in order], rotation=30, ha="right", fontsize=10)
    ax.set_ylabel("Avg. Gap to Retrain ↓ (95 % CI)", fontsize=10)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def first_screen(by_label: dict[str, list[dict]], lead: list[str], out_dir: Path, scope: str,
                 reaudits: dict[str, dict] | None = None) -> list[str]:
    """The report's opening section for the rows of ``scope`` (one request, or all pooled): the
    ``lead`` lines (the verdict), the one-seed warning, the gap figure and the audit lines."""
    if not lead:
        return []
    seeds = {r["seed"] for rs in by_label.values() for r in rs}
    out = ["## At a glance", "", *lead]
    if out[-1]:
        out.append("")
    if len(seeds) < 2:
        out += [f"> {ONE_SEED}", ""]
    if gap_figure(by_label, out_dir / "gaps.png", f"Avg. Gap to Retrain per method ({scope})"):
        out += ["![Avg. Gap to Retrain per method, 95 % intervals; green: within seed noise of the closest]"
                "(gaps.png)", ""]
    return out + audit_lines(by_label, reaudits)
