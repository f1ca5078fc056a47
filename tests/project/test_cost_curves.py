"""benchmarks/cost_curves.py: the growth exponent is the log-log slope, and the report names the
methods whose cost grows faster than retraining's."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cost_curves.py"


@pytest.fixture(scope="module")
def cost():
    spec = importlib.util.spec_from_file_location("cost_curves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_curves"] = module
    spec.loader.exec_module(module)
    return module


def _rows(method: str, exponent: float, fraction: float = 0.1) -> list[dict]:
    return [{"method": method, "pool": p, "fraction": fraction, "status": "ok", "cpu_seconds": 0.01 * p ** exponent,
             "peak_extra_mib": 10.0} for p in (1000, 3000, 10000)]


def test_exponent_is_the_log_log_slope_and_faster_methods_are_named(cost):
    rows = _rows("retrain", 1.0) + _rows("ssd", 1.5) + _rows("ga", 0.2)
    exps = cost.growth_exponents(rows)
    assert exps[("retrain", 0.1)] == pytest.approx(1.0) and exps[("ssd", 0.1)] == pytest.approx(1.5)
    assert list(cost.faster_than_retrain(rows)) == ["ssd"]
    table = cost.markdown(rows)
    assert "| ssd |" in table and "1.50 |" in table and "Grows faster than retraining" in table


def test_two_pools_give_no_exponent_and_failed_points_show_their_status(cost):
    rows = _rows("retrain", 1.0)[:2] + [{"method": "l2ul", "pool": 1000, "fraction": 0.1, "status": "timeout"}]
    assert cost.growth_exponents(rows) == {}
    assert "| l2ul | timeout |" in cost.markdown(rows)


def test_a_cut_line_in_the_store_is_skipped_so_the_point_runs_again(cost, tmp_path):
    store = tmp_path / "points.jsonl"
    store.write_text(json.dumps(_rows("retrain", 1.0)[0]) + "\n" + '{"method": "ga", "po')
    assert [r["method"] for r in cost._done(store)] == ["retrain"]
