"""Does the retrain-free audit agree with the Retrain-based measures? (issue 13 part 3, reduced grid)

``OMP_NUM_THREADS=1 python benchmarks/audit_agreement.py [--train-size 12000] [--seeds 0 1]
[--methods rl ga neggrad_plus salun rl+falw] [--stop-every 50] [--out /tmp/audit-agreement]``

A method label ``rl@stop`` runs RL with the ``indistinguishable`` stop rule (time saved and Avg. Gap
beside plain ``rl``).

Per seed: a random Fashion-MNIST subsample, a stratified 10 % held-out split, an MLP trained
``--train-epochs`` on the rest (the original). Per request (random 10 %, long-tailed 30 % γ = 1,
one class): a retrained MLP on the retain set (the reference) and every method unlearning the
request from the original. Per (cell, class) it records the audit's AUC and verdict beside the
Retrain-based numbers: ΔFA (forget accuracy minus Retrain's), the confidence gap (mean true-class
probability minus Retrain's on the same samples) and FaLW's unlearning deviation (under − over, %,
τ = 0.05); per cell also Avg. Gap (FA, RA, TA, MIA-Efficacy). It prints Spearman correlations and
direction agreement, and writes every record to ``<out>/agreement.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from forgetkit import unlearn
from forgetkit.data import DATASETS
from forgetkit.data.base import heldout_split
from forgetkit.data.requests import class_request, longtail_request, random_request
from forgetkit.metrics.audit import audit
from forgetkit.metrics.core import avg_gap, evaluate_model, unlearning_deviation
from forgetkit.models import build_model
from forgetkit.train import TrainRecipe, train_classifier
from forgetkit.unlearn.engine import DivergenceError

CPU = torch.device("cpu")
GAP_TAU = 0.02  # |confidence gap| below this counts as "faithful" for the Retrain-based direction


def train(data, seed: int, epochs: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("mlp", tuple(data.x.shape[1:]), 10)
    return train_classifier(model, data, TrainRecipe(epochs=epochs), seed, CPU, 10).eval()


def direction_of_gap(gap: float) -> str:
    return "under-forgotten" if gap > GAP_TAU else "over-forgotten" if gap < -GAP_TAU else "faithful"


def audit_direction(verdict: str) -> str:
    return verdict if verdict in ("under-forgotten", "over-forgotten") else "faithful"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=12000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--train-epochs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=5, help="unlearning epochs of every method")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=["rl", "ga", "neggrad_plus", "salun", "rl+falw"],
                    help="method[+weighting][@stop]; @stop adds the indistinguishable stop rule")
    ap.add_argument("--stop-every", type=int, default=50, help="steps between the stop rule's checks")
    ap.add_argument("--out", default="/tmp/audit-agreement")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    b = DATASETS.get("fashion_mnist")()
    records = []
    for seed in a.seeds:
        rng = np.random.default_rng(seed)
        pool = b.train.subset(np.sort(rng.choice(len(b.train), a.train_size, replace=False)))
        test = b.test.subset(np.sort(rng.choice(len(b.test), a.test_size, replace=False)))
        keep, held = heldout_split(pool.y, 0.1, seed)
        train_pool, heldout = pool.subset(keep), pool.subset(held)
        original = train(train_pool, seed, a.train_epochs)
        y = train_pool.y.numpy()
        requests = [random_request(y, 0.1, seed), longtail_request(y, 10, 0.3, 1.0, seed),
                    class_request(y, [int(rng.integers(10))], 10)]
        for req in requests:
            idx = np.sort(req.indices)
            forget = train_pool.subset(idx)
            retain = train_pool.subset(np.setdiff1d(np.arange(len(train_pool)), idx))
            retrained = train(retain, seed, a.train_epochs)
            ref = evaluate_model(retrained, forget, retain, test, CPU)
            for label in a.methods:
                name, _, stop = label.partition("@")
                method, _, weighting = name.partition("+")
                extra = {"stop": {"when": "indistinguishable", "every": a.stop_every}} if stop else {}
                start = time.perf_counter()
                try:
                    res = unlearn(original, train_pool, idx, method=method, weighting=weighting or "uniform",
                                  heldout=heldout, num_classes=10, seed=seed, epochs=a.epochs,
                                  forget_classes=req.classes, **extra)
                except DivergenceError as e:  # recorded, left out of the correlations
                    records.append({"seed": seed, "request": req.name, "method": label, "diverged": str(e)})
                    print(f"seed {seed} {req.name:<28} {label:<13} diverged: {e}", flush=True)
                    continue
                secs = time.perf_counter() - start
                ev = evaluate_model(res.model, forget, retain, test, CPU)
                r = audit(res.model, forget, heldout, seed=seed, forget_classes=req.classes)
                pu, pr = ev["forget_probs"], ref["forget_probs"]
                fy = forget.y.numpy()
                classes = []
                for e in r.per_class:
                    m = fy == e.cls
                    dev = unlearning_deviation(pu[m], pr[m])
                    classes.append({"cls": e.cls, "n": int(m.sum()), "auc": e.auc, "verdict": e.verdict, "removed": e.removed,
                                    "dFA": 100 * float(ev["forget_correct"][m].mean() - ref["forget_correct"][m].mean()),
                                    "conf_gap": float((pu[m] - pr[m]).mean()),
                                    "deviation": dev["under"] - dev["over"]})
                dev = unlearning_deviation(pu, pr)
                records.append({"seed": seed, "request": req.name, "kind": req.kind, "method": label,
                                "seconds": secs, "steps": res.info.get("steps"), "stopped_at": res.info.get("stopped_at"),
                                "auc": r.overall.auc, "ci": [r.overall.ci_low, r.overall.ci_high],
                                "verdict": r.verdict, "dFA": ev["FA"] - ref["FA"],
                                "conf_gap": float((pu - pr).mean()), "deviation": dev["under"] - dev["over"],
                                "avg_gap": avg_gap(ev, ref), "classes": classes})
                print(f"seed {seed} {req.name:<28} {label:<13} AUC {r.overall.auc:.3f} {r.verdict:<16} "
                      f"dFA {records[-1]['dFA']:+6.1f} gap {records[-1]['conf_gap']:+.3f} AvgGap {records[-1]['avg_gap']:.2f}",
                      flush=True)
            save(out, a, records)  # after every request: a crash later keeps what was measured
    print(json.dumps(save(out, a, records), indent=2))


def save(out: Path, a, records: list[dict]) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    summary = summarise([r for r in records if "diverged" not in r])
    summary["diverged"] = sum("diverged" in r for r in records)
    (out / "agreement.json").write_text(json.dumps({"commit": commit, "args": vars(a), "summary": summary,
                                                    "records": records}, indent=2))
    return summary


def _rho(x, y) -> float:
    return float(spearmanr(x, y)[0]) if len(x) > 2 else float("nan")


def summarise(records: list[dict]) -> dict:
    """Spearman ρ of the audit's AUC against each Retrain-based measure (requests and classes kept in
    part: a class removed whole is judged by another rule, not by its AUC) and direction agreement
    (every request and class row with a verdict)."""
    part = [r for r in records if r.get("kind") != "class"]
    rows = [c for r in records for c in r["classes"] if c["verdict"] != "too few samples"]
    kept = [c for c in rows if not c["removed"]]
    s = {"n_cells": len(records), "n_partial_cells": len(part), "n_class_rows": len(rows), "n_kept_rows": len(kept)}
    for key in ("dFA", "conf_gap", "deviation"):
        s[f"rho_request_{key}"] = _rho([r["auc"] for r in part], [r[key] for r in part])
        s[f"rho_class_{key}"] = _rho([c["auc"] for c in kept], [c[key] for c in kept])
    s["rho_request_avg_gap_vs_abs_auc"] = _rho([abs(r["auc"] - 0.5) for r in part], [r["avg_gap"] for r in part])
    agree = lambda xs: float(np.mean([audit_direction(x["verdict"]) == direction_of_gap(x["conf_gap"])  # noqa: E731
                                      for x in xs])) if xs else None
    s["direction_agreement_partial_requests"] = agree(part)
    s["direction_agreement_class_requests"] = agree([r for r in records if r.get("kind") == "class"])
    s["direction_agreement_kept_class_rows"] = agree(kept)
    s["direction_agreement_removed_class_rows"] = agree([c for c in rows if c["removed"]])
    flagged = [c for c in kept if c["verdict"] in ("under-forgotten", "over-forgotten")]
    s["flagged_kept_rows"] = len(flagged)
    s["flag_direction_matches_gap"] = agree(flagged)
    return s


if __name__ == "__main__":
    main()
