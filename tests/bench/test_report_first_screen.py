"""The run report's first screen (``forgetkit.bench.glance``) and its one meaning of "±": the
closest method against seed noise, the audit's line per row, the gap figure."""
from __future__ import annotations

import math

import pytest
from scipy import stats

from forgetkit.bench.glance import audit_lines, closest, first_screen, verdict_lines
from forgetkit.bench.intervals import PLUS_MINUS, fmt_ci, t_interval
from forgetkit.bench.report import _fmt, main_table


def _rows(label, gaps, request="r", **metrics):
    return [{"method": label, "seed": s, "request": request, "params": {},
             "metrics": {"AvgGap": g, "FA": 50.0, "RA": 90.0, "TA": 80.0, "MIA": 40.0, "time_s": 1.0, **metrics}}
            for s, g in enumerate(gaps)]


def test_every_plus_minus_of_the_run_report_is_the_95_percent_t_half_width():
    v = [1.0, 2.0, 4.0]
    half = stats.t.ppf(0.975, 2) * stats.tstd(v) / math.sqrt(3)
    assert _fmt(v) == fmt_ci(v) == f"{sum(v) / 3:.2f} ± {half:.2f}"
    assert _fmt([3.0]) == "3.00 (n<2)" and _fmt([None, float("nan")]) == "–"
    assert "95 % Student-t" in PLUS_MINUS


def test_a_lead_beyond_seed_noise_is_called_so_and_a_tie_is_called_a_tie():
    by = {"Retrain": _rows("Retrain", [0, 0, 0]), "Original": _rows("Original", [9.0, 9.5, 8.5]),
          "RA": _rows("RA", [1.0, 1.2, 0.9]), "RL": _rows("RL", [3.0, 3.3, 2.8]), "FT": _rows("FT", [1.1, 1.0, 1.2])}
    best, noise = closest(by)
    assert best == "RA" and noise == {"RA": True, "RL": False, "FT": True}
    text = "\n".join(verdict_lines(by))
    assert f"**Closest to Retrain: RA**, Avg. Gap {fmt_ci([1.0, 1.2, 0.9])} (the untouched Original: " in text
    assert "Its lead: 0.07 below the next, FT, **within seed noise** (paired t-test over 3 seeds" in text
    assert "Within seed noise of RA (paired t-test p ≥ 0.05; few seeds make this test weak): FT." in text
    by.pop("FT")
    p = stats.ttest_rel([3.0, 3.3, 2.8], [1.0, 1.2, 0.9]).pvalue
    assert f"below the next, RL, **beyond seed noise** (paired t-test over 3 seeds: p = {p:.3f})" in \
        "\n".join(verdict_lines(by))
    table = "\n".join(main_table({"Retrain": by["Retrain"], "RA": by["RA"], "RL": by["RL"]}))
    assert "| RL |" in table and "≈" not in table


def test_one_seed_says_no_spread_was_measured(tmp_path):
    by = {"Retrain": _rows("Retrain", [0]), "RA": _rows("RA", [1.0]), "RL": _rows("RL", [3.0])}
    screen = "\n".join(first_screen(by, ["- lead"], tmp_path, "request r"))
    assert "With one seed no spread was measured" in screen
    assert "one seed, so no spread was measured" in "\n".join(verdict_lines(by))


def test_the_audit_says_one_line_per_row_from_the_stored_verdicts():
    by = {"Original": _rows("Original", [5, 5], audit_verdict="under-forgotten", audit_auc=0.6),
          "RL": _rows("RL", [1, 1], audit_verdict="faithful", audit_target_auc=0.51, audit_auc=0.7),
          "FT": _rows("FT", [2, 2])}
    by["RL"][1]["metrics"]["audit_verdict"] = "inconclusive"
    lines = audit_lines(by)
    assert "- **Original**: under-forgotten on 2 of 2 seed(s) (AUC 0.60 ± 0.00)" in lines
    assert any(line.startswith("- **RL**: faithful on 1 of 2 seed(s), inconclusive on 1 of 2 seed(s) (AUC 0.51")
               for line in lines)
    assert not any("**FT**" in line for line in lines)  # no audit stored: no line
    assert audit_lines({"FT": _rows("FT", [1])}) == []
    for i, r in enumerate(by["FT"]):
        r["key"] = f"ft{i}"
    redone = {"ft0": {"audit_verdict": "faithful", "audit_auc": 0.5}, "ft1": {"audit_verdict": "faithful",
                                                                          "audit_auc": 0.52}}
    assert "- **FT**: faithful on 2 of 2 seed(s) (AUC 0.51 ± 0.13)" in audit_lines(by, redone)  # a re-audit wins


def test_the_first_screen_draws_the_gap_figure(tmp_path):
    by = {"Retrain": _rows("Retrain", [0, 0]), "Original": _rows("Original", [9.0, 8.0]),
          "RA": _rows("RA", [1.0, 1.5])}
    screen = first_screen(by, verdict_lines(by), tmp_path, "request r")
    assert screen[0] == "## At a glance" and "(gaps.png)" in "\n".join(screen)
    assert (tmp_path / "gaps.png").read_bytes()[:4] == b"\x89PNG"
    assert t_interval([1.0, 1.5])[1] == pytest.approx(stats.t.ppf(0.975, 1) * stats.tstd([1.0, 1.5]) / math.sqrt(2))
