"""Measures against the retrained reference, derived from stored raw rows — the one place they
are computed, for the report, ``tune`` and summaries alike.

Each row is paired with the Retrain row of the same forget request and seed; a row whose
reference failed or is missing gets no derived measures (and says so by their absence).
"""
from __future__ import annotations

import numpy as np

from ..metrics.core import derived_metrics
from .grid import ORIGINAL, RETRAIN


def with_derived(rows: list[dict], artifacts: dict[str, dict], tau: float = 0.05) -> list[dict]:
    """Copies of ``rows`` whose metrics also hold gap_*, AvgGap, dFA_*, dev_* and speedup.

    ``artifacts``: key → stored artifacts (for the forget-set probabilities of deviation); rows
    whose probabilities are absent get every derived measure except deviation.
    """
    refs = {(r["request"], r["seed"]): r for r in rows if r["method"] == RETRAIN and r["status"] == "ok"}
    out = []
    for r in rows:
        r = {**r, "metrics": dict(r["metrics"])}
        ref = refs.get((r["request"], r["seed"]))
        if r["status"] == "ok" and ref is not None:
            m = r["metrics"]
            if r["method"] == RETRAIN:
                m.update({"AvgGap": 0.0, "speedup": 1.0})
            else:
                probs = artifacts.get(r["key"], {}).get("forget_probs")
                ref_probs = artifacts.get(ref["key"], {}).get("forget_probs")
                m.update(derived_metrics(m, ref["metrics"], _array(probs), _array(ref_probs), tau))
                if r["method"] != ORIGINAL:  # the original's training time is no unlearning cost
                    m["speedup"] = m["retrain_time_s"] / m["time_s"] if m.get("time_s") else float("nan")
        out.append(r)
    return out


def _array(values):
    return None if values is None else np.asarray(values, float)
