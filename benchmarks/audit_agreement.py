"""Does the retrain-free audit agree with the Retrain-based measures? (issue 13 part 3)

``python benchmarks/audit_agreement.py RUN_DIR [RUN_DIR ...] [--out FILE.json] [--margin 0.02]
[--target-margin 0.02] [--target-margin-below 0.10] [--retrain-slope K]``

Reads a finished (or growing) run made with ``metrics.audit: true`` — e.g. ``forgetkit run
configs/audit-stop.yaml --out runs/audit-stop`` — and re-audits every unlearned row from the scores
its store keeps (``forgetkit.audit.audit_scores``; the Original row of the same request and
seed is "before"). Nothing is trained or run. Beside each row's audit it puts the Retrain-based
measures of the same row against the Retrain row: ΔFA (forget accuracy minus Retrain's, points),
the confidence gap (mean true-class probability minus Retrain's on the same samples), FaLW's
unlearning deviation (under − over, %, τ = 0.05) and Avg. Gap — per request over the classes kept in
part, and per such class; classes removed whole (every class of a class request, the emptied
head classes of a steep long-tailed one) are judged by the audit's own rule and counted apart.

It prints, and writes to ``--out`` (JSON) and beside it (``.md``, the tables of docs/audit.md): Spearman ρ of each audit score against each Retrain measure
with a 95 % bootstrap interval over cells, and the agreement of the audit's direction (under /
faithful / over, from its interval; "cannot decide" left out and counted as coverage) with the
Retrain-based direction (confidence gap beyond ±0.02). Rows labelled ``X@variant`` (a stop rule)
are paired with ``X`` for the stop-rule table (time saved, Avg. Gap fixed → stop).
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
from scipy.special import expit
from scipy.stats import spearmanr

from forgetkit.bench.grid import ORIGINAL, RETRAIN
from forgetkit.bench.report import load_run
from forgetkit.audit import audit_scores, decode_scores
from forgetkit.audit.rules import RETRAIN_SLOPE, TARGET_MARGIN, TARGET_MARGIN_BELOW
from forgetkit.metrics.core import unlearning_deviation

GAP_TAU = 0.02
"""|confidence gap| (probability) below which the Retrain-based direction is "faithful\""""
DIRECTIONS = ("under-forgotten", "faithful", "over-forgotten")

# audit score → the Retrain-based measure it estimates (the pairs the tables report)
PAIRS = {"target_auc": "deviation", "target_acc_gap": "dFA", "target_conf_gap": "conf_gap",
         "estimated_gap": "avg_gap", "same_auc": "deviation"}


def retrain_direction(conf_gap: float) -> str:
    return "under-forgotten" if conf_gap > GAP_TAU else "over-forgotten" if conf_gap < -GAP_TAU else "faithful"


def audit_direction(verdict: str) -> str | None:
    """The audit's direction, or None ("cannot decide") for inconclusive / too few samples."""
    return verdict if verdict in DIRECTIONS else None


def _retrain_measures(a: dict, r: dict, sel: np.ndarray) -> dict:
    pa, pr = expit(a["forget"][sel]), expit(r["forget"][sel])
    dev = unlearning_deviation(pa, pr)
    return {"dFA": 100.0 * float(a["forget_correct"][sel].mean() - r["forget_correct"][sel].mean()),
            "conf_gap": float((pa - pr).mean()), "deviation": dev["under"] - dev["over"]}


def _weighted(evidence, key) -> float:
    w = np.array([e.n_forget for e in evidence], float)
    return float(w @ [key(e) for e in evidence] / w.sum())


def cell_records(run: Path, *, margin: float, target_margin: float, target_margin_below: float,
                 n_boot: int, retrain_slope: float = RETRAIN_SLOPE, seeds=None) -> list[dict]:
    """One record per unlearned row that has stored scores and both reference rows (of ``seeds``
    only, when given: a setting chosen on some seeds is reported on the others)."""
    _, rows, _, arts = load_run(run, with_artifacts=True)
    by = {(r["method"], r["request"], r["seed"]): r for r in rows}
    out = []
    for row in rows:
        if row["method"] == ORIGINAL or (seeds is not None and row["seed"] not in seeds):
            continue
        ref, orig = by.get((RETRAIN, row["request"], row["seed"])), by.get((ORIGINAL, row["request"], row["seed"]))
        if ref is None or orig is None or not all("audit_scores" in arts[x["key"]] for x in (row, ref, orig)):
            continue
        a, r, o = (decode_scores(arts[x["key"]]["audit_scores"]) for x in (row, ref, orig))
        stored = arts[row["key"]]["audit"]
        accuracy = {k: v for k, v in stored["accuracy"].items() if k in ("retain", "test")}
        rc = stored["settings"].get("retain_counts")
        res = audit_scores(a, o, num_classes=int(row["provenance"]["num_classes"]), accuracy=accuracy,
                           retain_counts=None if rc is None else {int(k): v for k, v in rc.items()},
                           forget_classes=stored["settings"]["forget_classes"], margin=margin,
                           target_margin=target_margin, target_margin_below=target_margin_below, n_boot=n_boot,
                           retrain_slope=retrain_slope, seed=int(row["seed"]))
        yf = a["forget_y"]
        kept = [e for e in res.target.per_class if not e.removed]
        same = {e.cls: e for e in res.after.per_class}
        classes = []
        for e in res.target.per_class:
            m = yf == e.cls
            classes.append({"cls": e.cls, "n_forget": e.n_forget, "n_heldout": e.n_heldout, "removed": e.removed,
                            "target_auc": e.auc, "target_ci": [e.ci_low, e.ci_high], "target_verdict": e.verdict,
                            "target_acc_gap": e.acc_forget - e.acc_heldout,
                            "target_conf_gap": e.mean_prob_forget - e.mean_prob_heldout,
                            "same_auc": same[e.cls].auc, "same_verdict": same[e.cls].verdict,
                            **_retrain_measures(a, r, m)})
        rec = {"method": row["method"], "request": row["request"], "seed": row["seed"],
               "reference": row["method"] == RETRAIN,
               "time_s": row["metrics"]["time_s"], "avg_gap": row["metrics"].get("AvgGap"),
               "stopped_at": arts[row["key"]].get("stopped_at"), "estimated_gap": res.estimated_gap,
               "n_kept_classes": len(kept), "n_removed_classes": len(classes) - len(kept), "classes": classes,
               "verdict": res.target.overall.verdict, "same_verdict": res.after.overall.verdict}
        if kept:
            m = np.isin(yf, [e.cls for e in kept])
            unmoved = res.target_unmoved or res.target
            rec |= {"target_auc": res.target.overall.auc, "target_auc_unmoved": unmoved.overall.auc,
                    "target_ci": [res.target.overall.ci_low, res.target.overall.ci_high],
                    "target_verdict": res.target.kept_verdict,
                    "target_acc_gap": _weighted(kept, lambda e: e.acc_forget - e.acc_heldout),
                    "target_conf_gap": _weighted(kept, lambda e: e.mean_prob_forget - e.mean_prob_heldout),
                    "same_auc": res.after.overall.auc, "same_verdict_kept": res.after.kept_verdict,
                    **_retrain_measures(a, r, m)}
        out.append(rec)
    return out


def rho_with_ci(x, y, n_boot: int = 1000, seed: int = 0) -> dict:
    """Spearman ρ and a 95 % percentile interval from resampling the pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 4:
        return {"rho": None, "ci": None, "n": int(len(x))}
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            reps.append(spearmanr(x[i], y[i])[0])
    return {"rho": float(spearmanr(x, y)[0]), "ci": [float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))],
            "n": int(len(x))}


def agreement(items, verdict_key: str) -> dict:
    """Direction agreement over the items the audit decides, and the share it decides."""
    decided = [(audit_direction(i[verdict_key]), retrain_direction(i["conf_gap"])) for i in items
               if audit_direction(i[verdict_key]) is not None]
    return {"n": len(items), "decided": len(decided), "coverage": len(decided) / len(items) if items else None,
            "agreement": float(np.mean([a == b for a, b in decided])) if decided else None,
            "agreement_counting_undecided_as_faithful": float(np.mean(
                [(audit_direction(i[verdict_key]) or "faithful") == retrain_direction(i["conf_gap"]) for i in items]))
            if items else None}


def false_alarms(refs: list[dict]) -> dict:
    """The audit of the Retrain rows themselves (a model that never saw the forget set): how often
    it flags them, and where their target AUC sits."""
    part = [r for r in refs if r["n_kept_classes"]]
    kept = [c for r in refs for c in r["classes"] if not c["removed"] and c["target_verdict"] != "too few samples"]
    flags = ("under-forgotten", "over-forgotten")
    return {"retrain_rows": len(refs),
            "request_flagged": float(np.mean([r["target_verdict"] in flags for r in part])) if part else None,
            "class_flagged": float(np.mean([c["target_verdict"] in flags for c in kept])) if kept else None,
            "removed_class_flagged": float(np.mean([c["target_verdict"] in flags for r in refs for c in r["classes"]
                                                    if c["removed"]])) if any(r["n_removed_classes"] for r in refs) else None,
            "target_auc": {r["request"] + f" s{r['seed']}": round(r["target_auc"], 3) for r in part},
            "same_request_flagged": float(np.mean([r["same_verdict_kept"] in flags for r in part])) if part else None}


def summarise(records: list[dict]) -> dict:
    refs = [r for r in records if r["reference"]]
    records = [r for r in records if not r["reference"]]
    part = [r for r in records if r["n_kept_classes"]]
    kept = [c for r in records for c in r["classes"] if not c["removed"] and c["target_verdict"] != "too few samples"]
    removed = [c for r in records for c in r["classes"] if c["removed"]]
    s = {"cells": len(records), "partial_cells": len(part), "kept_class_rows": len(kept),
         "removed_class_rows": len(removed), "seeds": sorted({r["seed"] for r in records}),
         "rho_request": {}, "rho_class": {}}
    for score, measure in PAIRS.items():
        if score == "estimated_gap":
            s["rho_request"][f"{score}~{measure}"] = rho_with_ci([r[score] if r[score] is not None else np.nan
                                                                  for r in records], [r[measure] for r in records])
            continue
        s["rho_request"][f"{score}~{measure}"] = rho_with_ci([r[score] for r in part], [r[measure] for r in part])
        s["rho_class"][f"{score}~{measure}"] = rho_with_ci([c[score] for c in kept], [c[measure] for c in kept])
    s["rho_request"]["same_auc~dFA"] = rho_with_ci([r["same_auc"] for r in part], [r["dFA"] for r in part])
    s["rho_request"]["abs_same_auc~avg_gap"] = rho_with_ci([abs(r["same_auc"] - 0.5) for r in records if "same_auc" in r],
                                                           [r["avg_gap"] for r in records if "same_auc" in r])
    s["direction_request_target"] = agreement(part, "target_verdict")
    s["direction_request_same"] = agreement(part, "same_verdict_kept")
    s["direction_class_target"] = agreement(kept, "target_verdict")
    s["direction_class_same"] = agreement(kept, "same_verdict")
    s["direction_removed_classes"] = agreement(removed, "target_verdict")
    s["false_alarms_on_retrain"] = false_alarms(refs)
    return s


def stop_table(records: list[dict]) -> list[dict]:
    """Per (request, method, seed): time and Avg. Gap of the fixed run and of each stop-rule twin
    (a row labelled ``X@variant`` is paired with ``X``)."""
    by = {(r["method"], r["request"], r["seed"]): r for r in records if not r["reference"]}
    out = []
    for (m, req, seed), twin in sorted(by.items()):
        base, _, variant = m.partition("@")
        r = by.get((base, req, seed))
        if variant and r is not None:
            out.append({"method": base, "variant": variant, "request": req, "seed": seed, "time_fixed": r["time_s"],
                        "time_stop": twin["time_s"], "avg_gap_fixed": r["avg_gap"], "avg_gap_stop": twin["avg_gap"],
                        "stopped_at": twin["stopped_at"]})
    return out


def _r(v) -> str:
    if v["rho"] is None:
        return f"– (n = {v['n']})"
    return f"{v['rho']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}] (n = {v['n']})"


def _a(v) -> str:
    if not v["n"]:
        return "–"
    agree = "–" if v["agreement"] is None else f"{100 * v['agreement']:.0f} %"
    return f"{agree} of {v['decided']} decided ({100 * v['coverage']:.0f} % of {v['n']})"


def markdown(summary: dict, records: list[dict], stop: list[dict]) -> str:
    """The tables of docs/audit.md from one run's records."""
    s, rr, rc = summary, summary["rho_request"], summary["rho_class"]
    lines = [f"{s['cells']} unlearned rows ({s['partial_cells']} with classes kept in part; {s['kept_class_rows']} "
             f"kept-class rows, {s['removed_class_rows']} removed-class rows), seeds {s['seeds']}.", "",
             "| audit score | Retrain-based measure | ρ per request [95 %] | ρ per class [95 %] |", "|---|---|---|---|"]
    names = {"target_auc": "target AUC", "target_acc_gap": "target accuracy gap", "target_conf_gap": "target confidence gap",
             "estimated_gap": "estimated gap", "same_auc": "same-model AUC (the first meter)"}
    for key, v in rr.items():
        score, _, measure = key.partition("~")
        label = names.get(score, score.replace("_", " "))
        lines.append(f"| {label} | {measure.replace('_', ' ')} | {_r(v)} | {_r(rc[key]) if key in rc else '–'} |")
    lines += ["", "| direction | target comparison (headline) | same-model comparison (the first meter) |", "|---|---|---|",
              f"| per request (classes kept in part) | {_a(s['direction_request_target'])} | {_a(s['direction_request_same'])} |",
              f"| per kept class | {_a(s['direction_class_target'])} | {_a(s['direction_class_same'])} |",
              f"| per class removed whole | {_a(s['direction_removed_classes'])} | (same rule) |",
              "", "Counting \"cannot decide\" as faithful (the first meter's definition): per request "
              f"{100 * s['direction_request_target']['agreement_counting_undecided_as_faithful']:.0f} % (target) and "
              f"{100 * s['direction_request_same']['agreement_counting_undecided_as_faithful']:.0f} % (same-model)."]
    fa = s["false_alarms_on_retrain"]
    if fa["retrain_rows"]:
        pct = lambda x: "–" if x is None else f"{100 * x:.0f} %"  # noqa: E731
        lines += ["", f"Retrain rows audited as if unlearned ({fa['retrain_rows']}): flagged per request "
                  f"{pct(fa['request_flagged'])}, per kept class {pct(fa['class_flagged'])}, per removed class "
                  f"{pct(fa['removed_class_flagged'])}; same-model comparison per request {pct(fa['same_request_flagged'])}. "
                  "Target AUC of the Retrain rows: " + ", ".join(f"{k} {v}" for k, v in fa["target_auc"].items()) + "."]
    by_shape: dict[str, list[dict]] = {}
    for r in records:
        if not r["reference"]:
            by_shape.setdefault(r["request"], []).append(r)
    lines += ["", "| request | rows | direction (target, per request or per removed class) | mean target AUC | mean deviation | mean Avg. Gap | mean estimated gap |",
              "|---|---|---|---|---|---|---|"]
    for req, rs in by_shape.items():
        part = [r for r in rs if r["n_kept_classes"]]
        items = part if part else [c for r in rs for c in r["classes"]]
        mean = lambda k, xs: np.mean([x[k] for x in xs if x.get(k) is not None]) if xs else float("nan")  # noqa: E731
        lines.append(f"| {req} | {len(rs)} | {_a(agreement(items, 'target_verdict'))} | {mean('target_auc', part):.3f} | "
                     f"{mean('deviation', part):+.1f} | {mean('avg_gap', rs):.2f} | {mean('estimated_gap', rs):.2f} |")
    if stop:
        groups: dict[tuple, list[dict]] = {}
        for x in stop:
            groups.setdefault((x["request"], x["method"], x["variant"]), []).append(x)
        lines += ["", "| request | method | rule | stopped at (per seed) | time saved | Avg. Gap fixed → rule |", "|---|---|---|---|---|---|"]
        for (req, m, var), xs in sorted(groups.items()):
            saved = 1.0 - sum(x["time_stop"] for x in xs) / sum(x["time_fixed"] for x in xs)
            at = ", ".join("–" if x["stopped_at"] is None else str(x["stopped_at"]) for x in xs)
            lines.append(f"| {req} | {m} | {var} | {at} | {100 * saved:.0f} % | "
                         f"{np.mean([x['avg_gap_fixed'] for x in xs]):.2f} → {np.mean([x['avg_gap_stop'] for x in xs]):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="+", help="run directories (results.sqlite) made with metrics.audit: true; several "
                    "(e.g. one per seed) are pooled")
    ap.add_argument("--margin", type=float, default=0.02, help="the same-model comparison's margin")
    ap.add_argument("--target-margin", type=float, default=TARGET_MARGIN, help="the target comparison's margin above 0.5")
    ap.add_argument("--target-margin-below", type=float, default=TARGET_MARGIN_BELOW,
                    help="the target comparison's margin below 0.5")
    ap.add_argument("--retrain-slope", type=float, default=RETRAIN_SLOPE,
                    help="κ of the reference shift κ·log(retained share of the class); 0 turns it off")
    ap.add_argument("--seeds", help="comma-separated seeds to keep (default: all)")
    ap.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples of each audit")
    ap.add_argument("--out", help="JSON file for the records and the summary (default RUN/agreement.json)")
    a = ap.parse_args()
    try:
        seeds = None if a.seeds is None else {int(x) for x in a.seeds.split(",")}
    except ValueError:
        raise SystemExit(f"--seeds must be comma-separated integers, got {a.seeds!r}") from None
    records = [rec for run in a.run for rec in cell_records(Path(run), margin=a.margin, target_margin=a.target_margin,
                                                             target_margin_below=a.target_margin_below, n_boot=a.n_boot,
                                                             retrain_slope=a.retrain_slope, seeds=seeds)]
    if not records:
        raise SystemExit(f"{', '.join(a.run)}: no unlearned row with stored audit scores and both reference rows yet")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    summary = summarise(records)
    out = Path(a.out or Path(a.run[0]) / "agreement.json")
    out.write_text(json.dumps({"commit": commit, "args": vars(a), "summary": summary, "stop": stop_table(records),
                               "records": records}, indent=1, default=float))
    print(json.dumps(summary, indent=1))
    stop = stop_table(records)
    md = markdown(summary, records, stop)
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"records: {out}; tables: {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
