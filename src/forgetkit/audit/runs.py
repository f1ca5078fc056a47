"""Auditing the rows of a finished run from the audit data its store keeps, and rendering their pages.

A benchmark cell stores audit data only, in the row's artifacts: ``audit`` (the result),
``audit_scores`` (the model's per-sample scores) and ``audit_page`` (what its page shows and where
it goes). Re-auditing and rendering need nothing else, so no model runs and no workspace is
rebuilt. Reading and writing the store is the caller's (the report step, the ``audit`` command):
the audit package never imports the benchmark.
"""
from __future__ import annotations

from ..files import safe_name
from .meter import audit_scores
from .report import render
from .scores import decode_scores
from .types import AuditResult, result_from_dict

SOURCE = "stored scores (float32) of the run's store"


def page_info(label: str, request_name: str, seed: int, *, method_settings: dict | None,
              unlearn_seconds: float | None, class_names=None, no_unlearning: bool = False) -> dict:
    """What a row's audit page shows beyond the result, stored with the row as ``audit_page``.
    ``no_unlearning``: the row is the original model (its seconds are its training time)."""
    return {"name": safe_name(f"{label}-{request_name}-seed{seed}"), "method_settings": method_settings,
            "unlearn_seconds": unlearn_seconds, "class_names": list(class_names) if class_names else None,
            "no_unlearning": no_unlearning}


def page_name(row: dict, artifacts: dict) -> str:
    """The directory name of a row's audit page (rows stored before ``audit_page`` existed: from the row)."""
    info = artifacts.get("audit_page") or {}
    return info.get("name") or safe_name(f"{row['method']}-{row['request']}-seed{row['seed']}")


def _scores(artifacts: dict | None):
    return None if not artifacts or "audit_scores" not in artifacts else decode_scores(artifacts["audit_scores"])


def render_row(row: dict, artifacts: dict, original_artifacts: dict | None = None, *,
               result: AuditResult | dict | None = None, figure: bool = True) -> dict[str, bytes]:
    """The audit page files of one stored row; ``result``: a re-audit's (default: the row's own).

    ``original_artifacts``: the Original row of the same request and seed, whose scores are the
    histograms' "before"."""
    scores = {k: v for k, v in (("after", _scores(artifacts)), ("before", _scores(original_artifacts)))
              if v is not None}
    if result is None or isinstance(result, dict):
        result = result_from_dict(result or artifacts["audit"], scores)
    if result.before is None:
        scores.pop("before", None)
    info = artifacts.get("audit_page") or {}
    return render(result, method=row["method"], method_settings=info.get("method_settings", row["params"]),
                  unlearn_seconds=info.get("unlearn_seconds", row["metrics"].get("time_s")),
                  class_names=info.get("class_names"), no_unlearning=bool(info.get("no_unlearning")), figure=figure)


def reaudit_rows(rows: list[dict], artifacts: dict[str, dict], *, original_label: str, alpha: float = 0.05,
                 margin: float = 0.02, target_margin: float | None = None, target_margin_below: float | None = None,
                 retrain_slope: float | None = None, min_samples: int = 20, n_boot: int = 300,
                 tolerance: float = 0.01) -> list[dict]:
    """Re-audit stored rows from their ``audit_scores``, the Original row of the same request and
    seed (``original_label``) as "before"; nothing is written.

    The classes removed whole and the retain counts come from the row's stored audit. Rows
    without scores are listed as skipped; when no row has them it is a ValueError. Returns one
    dict per row: key, method, request, seed, page, and result or skipped.
    """
    if not rows:
        raise ValueError("the store holds no finished rows to audit")
    originals = {(r["request"], r["seed"]): r for r in rows if r["method"] == original_label}
    targets = {k: v for k, v in (("target_margin", target_margin), ("target_margin_below", target_margin_below),
                                 ("retrain_slope", retrain_slope)) if v is not None}
    done = []
    for r in rows:
        a = artifacts[r["key"]]
        item = {"key": r["key"], "method": r["method"], "request": r["request"], "seed": r["seed"],
                "page": page_name(r, a)}
        if "audit_scores" not in a:
            done.append(item | {"skipped": "no stored audit scores (run with metrics.audit: true)"})
            continue
        orig = originals.get((r["request"], r["seed"]))
        before = None if r["method"] == original_label or orig is None else _scores(artifacts[orig["key"]])
        stored = a.get("audit") or {}
        settings = stored.get("settings") or {}
        accuracy = {k: {s: v for s, v in sides.items() if s == "after" or before is not None}
                    for k, sides in (stored.get("accuracy") or {}).items() if k in ("retain", "test")}
        num_classes = int(r["provenance"].get("num_classes") or stored.get("num_classes"))
        rc = settings.get("retain_counts")  # stores older than these counts: the reference is not moved
        result = audit_scores(decode_scores(a["audit_scores"]), before, num_classes=num_classes,
                              forget_classes=settings.get("forget_classes", []), accuracy=accuracy,
                              retain_counts=None if rc is None else {int(k): v for k, v in rc.items()},
                              alpha=alpha, margin=margin, tolerance=tolerance, min_samples=min_samples,
                              n_boot=n_boot, seed=int(r["seed"]), **targets)
        result.settings["source"] = SOURCE
        done.append(item | {"result": result})
    if not any("result" in d for d in done):
        raise ValueError("no row has stored audit scores: run it with metrics.audit: true "
                         "(forgetkit run CONFIG --set metrics.audit=true --out RUN_DIR; finished rows are kept)")
    return done


def headline(result: AuditResult) -> dict:
    """A row's audit metrics: the verdict, the deciding test, the mean true-class probability
    difference behind its direction, and the AUCs of the context comparisons."""
    out = {"audit_auc": result.after.overall.auc, "audit_verdict": result.verdict}
    if result.decision is not None:
        out["audit_decided_by"] = result.decision.decided_by or "–"
        if result.decision.prob_diff[0] == result.decision.prob_diff[0]:  # none when every class is removed whole
            out["audit_prob_diff"] = result.decision.prob_diff[0]
    if result.target is not None:  # forget under the model vs held-out under the original
        out["audit_target_auc"] = result.target.overall.auc
    return out


def audit_record(result: AuditResult) -> dict:
    """What a re-audit stores for a row (its own record; the row itself is never rewritten)."""
    return {"audit": result.to_dict()} | headline(result)
