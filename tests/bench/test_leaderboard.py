"""The leaderboard: its statistics against slow obvious references, its tables on synthetic rows
where the answer is known, and ``forgetkit report --leaderboard`` on two tiny real runs."""
from __future__ import annotations

import itertools
import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats

from forgetkit.bench import workspace
from forgetkit.bench.config import parse_config
from forgetkit.bench.leaderboard import (Entry, Setting, Shape, average_ranks, head_to_head, league, league_ranks,
                                         mean_ranks, paired_p, pareto_front, rank_shape, render,
                                         shown_name, t_interval)
from forgetkit.bench.runner import run_experiment
from forgetkit.cli import main

# -- slow references ---------------------------------------------------------------------------


def slow_t_cdf(x: float, df: int) -> float:
    """Student-t CDF by Simpson integration of its density from 0 to |x|."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    n = 20000
    t = np.linspace(0.0, abs(x), n + 1)
    f = c * (1 + t ** 2 / df) ** (-(df + 1) / 2)
    area = abs(x) / n / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    return 0.5 + math.copysign(area, x)


def slow_t_quantile(q: float, df: int) -> float:
    lo, hi = 0.0, 200.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slow_t_cdf(mid, df) < q else (lo, mid)
    return (lo + hi) / 2


def slow_mean_sd(v):
    m = sum(v) / len(v)
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_t_interval_matches_the_textbook_formula(n):
    v = list(np.random.default_rng(n).normal(5, 2, n))
    mean, half = t_interval(v)
    m, sd = slow_mean_sd(v)
    assert mean == pytest.approx(m)
    assert half == pytest.approx(slow_t_quantile(0.975, n - 1) * sd / math.sqrt(n), rel=1e-5)


def test_t_interval_of_one_value_has_no_width_and_bad_input_is_refused():
    assert t_interval([3.0]) == (3.0, None)
    for bad in ([], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="t_interval needs"):
            t_interval(bad)


def slow_ranks(scores: dict) -> dict:
    """1 + how many are strictly lower + half of the others tied with it."""
    return {k: 1 + sum(t < s for t in scores.values()) + (sum(t == s for t in scores.values()) - 1) / 2
            for k, s in scores.items()}


@pytest.mark.parametrize("seed", range(6))
def test_average_ranks_with_ties_match_counting(seed):
    rng = np.random.default_rng(seed)
    scores = {f"m{i}": float(rng.integers(0, 4)) for i in range(int(rng.integers(1, 9)))}
    assert average_ranks(scores) == slow_ranks(scores)


def test_average_ranks_examples():
    assert average_ranks({"a": 2.0, "b": 1.0, "c": 2.0, "d": 5.0}) == {"b": 1, "a": 2.5, "c": 2.5, "d": 4}
    assert average_ranks({}) == {}
    with pytest.raises(ValueError, match="finite"):
        average_ranks({"a": float("nan")})


def slow_paired_p(a, b) -> float:
    d = [x - y for x, y in zip(a, b)]
    m, sd = slow_mean_sd(d)
    t = m / (sd / math.sqrt(len(d)))
    return 2 * (1 - slow_t_cdf(abs(t), len(d) - 1))


@pytest.mark.parametrize("n", [2, 3, 6])
def test_paired_p_matches_the_t_statistic_and_scipy(n):
    rng = np.random.default_rng(n)
    a = rng.normal(3, 1, n)
    b = a + rng.normal(0.5, 1, n)
    assert paired_p(a, b) == pytest.approx(slow_paired_p(a, b), abs=1e-6)
    assert paired_p(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_paired_p_edges():
    assert paired_p([1.0], [2.0]) is None
    assert paired_p([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    with pytest.raises(ValueError, match="one length"):
        paired_p([1.0, 2.0], [1.0])


def slow_pareto(points: dict) -> set:
    return {k for k, (t, g) in points.items()
            if not any(t2 <= t and g2 <= g and (t2 < t or g2 < g) for t2, g2 in points.values())}


@pytest.mark.parametrize("seed", range(10))
def test_pareto_front_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    points = {f"m{i}": (float(rng.integers(0, 5)), float(rng.integers(0, 5))) for i in range(int(rng.integers(1, 12)))}
    assert pareto_front(points) == slow_pareto(points)


def test_pareto_front_keeps_identical_points_and_drops_dominated_ones():
    assert pareto_front({"a": (1, 5), "b": (1, 5), "c": (2, 5), "d": (3, 0)}) == {"a", "b", "d"}


def test_mean_ranks():
    assert mean_ranks([{"a": 1, "b": 2}, {"a": 3}]) == {"a": (2.0, 2), "b": (2.0, 1)}


# -- synthetic rows ----------------------------------------------------------------------------


def _row(seed, gap, *, status="ok", time_s=1.0, recipe=None, commit="abc1234", error=None, **metrics):
    m = {"AvgGap": gap, "FA": 10.0, "RA": 90.0, "TA": 80.0, "MIA": 20.0, "time_s": time_s, "retrain_time_s": 10.0,
         **metrics} if status == "ok" else {}
    return {"seed": seed, "status": status, "metrics": m, "params": {"recipe": recipe} if recipe else {},
            "provenance": {"commit": commit}, "error": error}


def _entry(label, gaps, failed=(), **kw):
    name, base, tuned = shown_name(label, bool(kw.get("recipe")))
    e = Entry(label, name, base, tuned)
    for s, g in enumerate(gaps):
        if g is not None:
            e.ok[s] = _row(s, g, **kw)
    for s in failed:
        e.failed[s] = _row(s, None, status="failed", error="DivergenceError: loss is nan\nsecond line",
                           recipe=kw.get("recipe"))
    return e


def _shape(name, kind, *entries):
    return Shape(name, kind, {e.label: e for e in entries})


def test_shown_names_use_the_papers_spelling_and_pair_tuned_rows():
    assert shown_name("salun-tuned", False) == ("SalUn-tuned", "SalUn", True)
    assert shown_name("l1_sparse", False) == ("ℓ1-sparse", "ℓ1-sparse", False)
    assert shown_name("falw-tuned", True) == ("FaLW-tuned", "FaLW", True)
    assert shown_name("RL", True) == ("RL-tuned", "RL", True)
    assert shown_name("My GA", False) == ("My GA", "My GA", False)


def test_rank_shape_ranks_methods_only_ties_share_and_tests_pair_on_shared_seeds():
    retrain, original = _entry("Retrain", [0, 0, 0]), _entry("Original", [0.5, 0.5, 0.5])
    a, b, c = _entry("A", [1.0, 2.0, 3.0]), _entry("B", [2.0, 3.0, 4.5]), _entry("C", [2.5, 3.5, 3.5])
    d = _entry("D", [None, None, None], failed=(0, 1, 2))
    r = rank_shape([retrain, original, a, b, c, d])
    assert r.ranks == {"A": 1.0, "B": 2.5, "C": 2.5}
    assert r.best == "A"
    diff, p, n = r.tests["B"]
    assert (diff, n) == (pytest.approx(9.5 / 3 - 2), 3)
    assert p == pytest.approx(stats.ttest_rel([2.0, 3.0, 4.5], [1.0, 2.0, 3.0]).pvalue)
    e = _entry("E", [None, 9.0, None])
    assert rank_shape([a, e]).tests["E"] == (7.0, None, 1)  # seed 1 only: 9 − 2


def test_leagues_take_tuned_rows_under_equal_tuning_and_untuned_at_defaults():
    shape = _shape("s", "random", _entry("Retrain", [0, 0]), _entry("RL", [5.0, 5.0]),
                   _entry("RL-tuned", [1.0, 1.0], recipe="RL-v1.yaml"), _entry("FT", [3.0, 3.0]))
    assert {b: e.label for b, e in league(shape, tuned=True).items()} == {"RL": "RL-tuned", "FT": "FT"}
    assert {b: e.label for b, e in league(shape, tuned=False).items()} == {"RL": "RL", "FT": "FT"}
    assert league_ranks(shape, tuned=True) == {"RL": 1.0, "FT": 2.0}
    assert league_ranks(shape, tuned=False) == {"FT": 1.0, "RL": 2.0}


def _settings(smoke=False):
    lt = _shape("lt-g1", "longtail", _entry("Retrain", [0, 0, 0], time_s=10.0), _entry("Original", [9, 9, 9]),
                _entry("RL", [4.0, 5.0, 6.0]), _entry("RL-tuned", [3.0, 3.5, 2.0], recipe="RL-v2.yaml"),
                _entry("FaLW", [2.0, 4.0, 1.0], time_s=2.0), _entry("SalUn", [7.0], failed=(1, 2)))
    cls = _shape("one-class", "class", _entry("Retrain", [0, 0, 0], time_s=10.0),
                 _entry("RL", [4.0, 4.0, 4.0], MIA_NN_gap=3.0, ULiRA_acc=60.0),
                 _entry("TRW", [1.0, 1.5, 1.2], time_s=0.5, MIA_NN_gap=1.0, ULiRA_acc=52.0),
                 _entry("FaLW", [None, None, None], failed=(0, 1, 2)))
    return [Setting("tiny-setting", "runs/tiny", "digits, seeds [0, 1, 2]", smoke, {"lt-g1": lt, "one-class": cls})]


def test_render_shows_both_rows_recipes_failures_n_lt_2_and_computes_the_summary():
    doc = render(_settings(smoke=True), "leaderboard-pareto.png", None)
    assert "> **Smoke run** (tiny-setting)" in doc
    lines = doc.splitlines()
    rl = next(i for i, line in enumerate(lines) if line.startswith("| ") and "| RL | defaults |" in line)
    assert "| RL-tuned | `RL-v2.yaml` |" in lines[rl + 1]  # untuned and tuned side by side
    salun = next(line for line in lines if "| SalUn |" in line)
    assert "7.00 (n<2)" in salun and "1 of 3 (2 failed)" in salun
    assert "- SalUn, seed 1: failed — DivergenceError: loss is nan" in doc
    falw_cls = [line for line in lines if "| FaLW |" in line][1]
    assert "**failed**" in falw_cls and "0 of 3 (3 failed)" in falw_cls
    assert "MIA-NN gap ↓" in doc and "U-LiRA acc (50 = ideal)" in doc
    assert "`abc1234`" in salun
    assert doc.count("## What holds under equal tuning") == 1
    # FaLW − RL-tuned on lt-g1: −1.0, +0.5, −1.0 → lower in 2 of 3
    assert "FaLW vs RL on long-tailed shapes (equal tuning): FaLW had the lower Avg. Gap in 2 of 3" in doc
    assert "TRW vs RL on class shapes (equal tuning): TRW had the lower Avg. Gap in 3 of 3" in doc
    assert "FaLW vs RL on mixed shapes: not measured" in doc
    assert "Pareto-optimal in tiny-setting over 2 shape(s): " in doc
    # RL (its tuned row) ranks best on the one shape set every ranked method shares
    assert "Best mean rank under equal tuning, over the 2 of 2 (setting, shape) pairs it was ranked on: **RL**" in doc
    assert "RL against each other method under equal tuning" in doc and "TRW 0 of 3 (0 %)" in doc


def test_smoke_tuned_recipes_get_their_own_banner():
    st = _settings()
    st[0].shapes["lt-g1"].entries["RL-tuned"].ok[0]["params"]["recipe"] = "RL-v3.yaml (smoke-tuned: not a result)"
    doc = render(st, None, None)
    assert "> **Smoke-tuned recipes** (`RL-v3.yaml (smoke-tuned: not a result)`)" in doc
    assert "Smoke-tuned" not in render(_settings(), None, None)


def test_an_unfinished_run_says_how_many_cells_have_a_row(runs, tmp_path):
    import sqlite3

    from forgetkit.bench.leaderboard import load_setting

    assert "unfinished" not in load_setting(runs / "lb-tiny").description
    part = tmp_path / "part"
    shutil.copytree(runs / "lb-tiny", part)
    with sqlite3.connect(part / "results.sqlite") as db:
        db.execute("DELETE FROM results WHERE method = 'FT' AND seed = 1")
    st = load_setting(part)
    n = len(json.loads((part / "experiment.json").read_text())["planned_keys"])
    assert f"⚠ unfinished run: {n - 2} of {n} planned cells have a row" in st.description
    assert [len(s.entries["FT"].ok) for s in st.shapes.values()] == [1, 1]


def test_render_includes_the_reading_verbatim_instead_of_the_summary():
    reading = "Under equal tuning, **nothing** beats Retrain.\n\n| a | b |\n|---|---|\n"
    doc = render(_settings(), None, reading)
    assert doc.endswith("## What holds under equal tuning\n\n" + reading.rstrip("\n") + "\n")
    assert "No reading was given" not in doc and "Smoke run" not in doc


def test_head_to_head_counts_pairs_under_equal_tuning():
    h = head_to_head(_settings(), "FaLW", "RL", ("longtail",))
    assert h == {"wins": 2, "pairs": 3, "mean": pytest.approx(-0.5), "shapes": 1, "sig_a": 0, "sig_b": 0,
                 "time_ratio": pytest.approx(2.0)}  # FaLW 2 s, RL-tuned 1 s
    assert head_to_head(_settings(), "TRW", "FaLW", ("class",)) is None
    # every shape: lt-g1 (FaLW vs RL-tuned) and one-class (TRW has no FaLW gap there: FaLW failed)
    assert head_to_head(_settings(), "RL", "FaLW")["pairs"] == 3
    h = head_to_head(_settings(), "TRW", "RL")
    assert (h["wins"], h["pairs"], h["time_ratio"]) == (3, 3, pytest.approx(0.5))
    assert h["sig_a"] == (paired_p([1.0, 1.5, 1.2], [4.0, 4.0, 4.0]) < 0.05)


def test_beats_all_counts_pairs_won_against_every_rival_at_once():
    from forgetkit.bench.leaderboard import beats_all, ours_lines

    st = _settings()[0]
    # lt-g1, equal tuning: FaLW 2, 4, 1 against RL-tuned 3, 3.5, 2 and SalUn 7 (seed 0 only)
    assert beats_all(st, "FaLW", ("RL",)) == (2, 3)
    assert beats_all(st, "FaLW", ("RL", "SalUn")) == (1, 1)  # only seed 0 has all three
    assert beats_all(st, "RL", ("FaLW",)) == (1, 3)
    # one-class: TRW 1, 1.5, 1.2 against RL 4, 4, 4; FaLW failed there, so it has no pair
    assert beats_all(st, "TRW", ("RL",)) == (3, 3) and beats_all(st, "TRW", ("FaLW",)) == (0, 0)
    slow = [(w, n) for s in st.shapes.values() for seed in (0, 1, 2)
            for w, n in [_slow_beats(league(s, tuned=True), "FaLW", ("RL",), seed)]]
    assert (sum(w for w, _ in slow), sum(n for _, n in slow)) == beats_all(st, "FaLW", ("RL",))
    assert ours_lines(_settings()) == []  # no RA-Targets rows
    ra = _settings()
    ra[0].shapes["lt-g1"].entries["RA-Targets (ours)"] = _entry("RA-Targets (ours)", [2.5, 3.6, 0.5])
    assert "- tiny-setting: 1 of 1 (100 %)" in ours_lines(ra)  # with SalUn only seed 0 has all three


def test_a_setting_without_tuned_rows_stays_out_of_the_equal_tuning_summaries():
    from forgetkit.bench.leaderboard import ours_lines, split_by_tuning

    tuned = _settings()[0]
    tuned.shapes["lt-g1"].entries["RA-Targets (ours)"] = _entry("RA-Targets (ours)", [2.5, 3.6, 0.5])
    plain = Setting("cnn-defaults", "runs/cnn", "fmnist, seeds [0, 1]", False, {"r": _shape(
        "r", "random", _entry("Retrain", [0, 0]), _entry("RL", [3.0, 3.0]), _entry("SalUn", [4.0, 4.0]),
        _entry("RA-Targets (ours)", [1.0, 5.0]))})
    assert tuned.tuned and not plain.tuned
    assert split_by_tuning([tuned, plain]) == ([tuned], [plain])
    assert split_by_tuning([plain]) == ([plain], [])  # nothing tuned anywhere: defaults are the only league
    lines = ours_lines([tuned, plain])
    assert "- tiny-setting: 1 of 1 (100 %)" in lines
    assert "- cnn-defaults (reference defaults only, not in the total): 1 of 2 (50 %)" in lines
    assert not any(line.startswith("- all settings") for line in lines)
    doc = render([tuned, plain], None, None)
    assert "Every row of this setting ran at its reference defaults" in doc
    assert doc.count("Every row of this setting ran at its reference defaults") == 1
    assert "## Mean rank over" not in doc  # one tuned setting: its own table is the summary
    assert "- Not in these lines: cnn-defaults" in doc
    # the equal-tuning reading counts the tuned setting's pairs only: RL has no row of cnn-defaults in it
    assert "over the 2 of 2 (setting, shape) pairs" in doc
    two = render([tuned, _settings()[0], plain], None, None).replace("tiny-setting", "x")
    assert "## Mean rank over the 4 (setting, shape) pairs of the tuned settings" in two


def _slow_beats(members, a, rivals, seed):
    """1 pair won / 1 pair when every method has a gap on ``seed``, else (0, 0)."""
    try:
        mine, theirs = members[a].gaps()[seed], [members[r].gaps()[seed] for r in rivals]
    except KeyError:
        return 0, 0
    return int(all(mine < t for t in theirs)), 1


# -- end to end on two tiny real runs ------------------------------------------------------------

BASE = {"dataset": "digits", "train_size": 300, "test_size": 100, "heldout_fraction": 0.1, "device": "cpu",
        "threads": 1, "model": {"name": "mlp", "options": {"hidden": 16, "depth": 1}},
        "train": {"epochs": 2, "lr": 0.1, "batch_size": 64}, "seeds": [0, 1]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny real run (2 seeds, a random and a class request, FT, RL and RL-tuned with a recipe,
    MIA-NN on the class request), and a copy of it renamed and flagged smoke as a second setting."""
    root = tmp_path_factory.mktemp("lb")
    raw = {**BASE, "name": "lb-tiny",
           "requests": [{"kind": "random", "fraction": 0.1, "name": "random 10 %"}, {"kind": "class", "classes": [3]}],
           "methods": [{"name": "ft", "options": {"epochs": 1}}, {"name": "rl", "options": {"epochs": 1}},
                       {"name": "rl", "label": "RL-tuned", "recipe": "RL-v1.yaml", "options": {"epochs": 2, "lr": 0.02}}],
           "metrics": {"extra": ["mia_nn"], "extra_options": {"mia_nn": {"references": 2}}}}
    with pytest.MonkeyPatch.context() as mp:  # a committed tree's rows, whatever state this checkout is in
        mp.setattr(workspace, "code_commit", lambda: "abc1234")
        run_experiment(parse_config(raw), root / "lb-tiny", show_progress=False)
    shutil.copytree(root / "lb-tiny", root / "lb-smoke")
    meta = json.loads((root / "lb-smoke" / "experiment.json").read_text())
    meta["name"], meta["config"]["smoke"] = "lb-smoke", True
    (root / "lb-smoke" / "experiment.json").write_text(json.dumps(meta))
    return root


def test_cli_writes_the_leaderboard_and_its_plot(runs, capsys):
    out = runs / "docs" / "leaderboard.md"
    assert main(["report", "--leaderboard", str(runs / "lb-tiny"), str(runs / "lb-smoke"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"leaderboard: {out}"
    doc = out.read_text()
    for heading in ("## lb-tiny", "### lb-tiny: `random 10 %` (random request)", "### lb-tiny: `class3` (class request)",
                    "## lb-smoke (smoke run)", "### lb-tiny: across shapes", "## Mean rank over all 4 (setting, shape) pairs",
                    "## Gap vs time", "## What holds under equal tuning"):
        assert heading in doc
    assert "> **Smoke run** (lb-smoke)" in doc
    assert doc.count("| Rank | Method | Recipe | Avg. Gap ↓ |") == 4
    assert "| RL-tuned | `RL-v1.yaml` |" in doc and "| RL | defaults |" in doc and "| FT | defaults |" in doc
    assert doc.count("MIA-NN gap ↓") == 2  # the class shape of each setting, not the random one
    png = runs / "docs" / "leaderboard-pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(leaderboard-pareto.png)" in doc
    assert "Pareto-optimal in lb-tiny" in doc


def test_cli_reading_survives_regeneration_and_bad_input_writes_nothing(runs, capsys):
    out = runs / "docs2" / "leaderboard.md"
    reading = runs / "reading.md"
    reading.write_text("Our reading: RL-tuned is closest on this tiny run.\n")
    args = ["report", "--leaderboard", str(runs / "lb-tiny"), "--out", str(out), "--reading", str(reading)]
    assert main(args) == 0 and main(args) == 0
    assert out.read_text().endswith("## What holds under equal tuning\n\nOur reading: RL-tuned is closest on this tiny run.\n")
    before = out.read_text()
    capsys.readouterr()
    for bad, msg in ((["--reading", str(runs / "missing.md")], "--reading"),
                     ([str(runs / "nowhere")], "holds no run"),
                     ([str(runs / "lb-tiny")], "twice")):
        lead = bad if bad[0] != "--reading" else []
        argv = ["report", "--leaderboard", str(runs / "lb-tiny"), *lead, "--out", str(out)] + [x for x in bad if x not in lead]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("forgetkit: error: ") and msg in err and "Traceback" not in err
        assert out.read_text() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["leaderboard-pareto.png", "leaderboard.md"]


def test_cli_report_needs_a_run_or_the_leaderboard(runs, capsys):
    assert main(["report"]) == 2
    assert "give a run directory, or --leaderboard" in capsys.readouterr().err
    assert main(["report", str(runs / "lb-tiny"), "--reading", "x.md"]) == 2
    assert "belong to --leaderboard" in capsys.readouterr().err


def test_same_experiment_name_twice_is_refused(runs, capsys, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(runs / "lb-tiny", copy)
    assert main(["report", "--leaderboard", str(runs / "lb-tiny"), str(copy), "--out", str(tmp_path / "lb.md")]) == 2
    assert "are all named 'lb-tiny'" in capsys.readouterr().err
    assert not (tmp_path / "lb.md").exists()


def test_every_pair_of_seeds_ranks_the_same_as_the_means(runs):
    """The tables' rank order is the order of mean Avg. Gaps, seed pairs and all (a brute-force check)."""
    from forgetkit.bench.leaderboard import load_setting

    st = load_setting(runs / "lb-tiny")
    for shape in st.shapes.values():
        r = rank_shape(list(shape.entries.values()))
        means = {e.label: np.mean(list(e.gaps().values())) for e in shape.entries.values()
                 if e.label in r.ranks}
        for x, y in itertools.permutations(means, 2):
            assert (means[x] < means[y]) == (r.ranks[x] < r.ranks[y])
        assert {e.label for e in shape.entries.values()} == {"Retrain", "Original", "FT", "RL", "RL-tuned"}
        assert all(len(e.ok) == 2 for e in shape.entries.values())


def test_bad_leaderboard_inputs_are_refused_with_one_line_and_write_nothing(runs, capsys, tmp_path):
    """docs/errors.md, "Leaderboard": every refusal is one line, exit 2, and no file is written."""
    from forgetkit.bench.store import ResultStore

    good = str(runs / "lb-tiny")
    other = tmp_path / "soft"
    shutil.copytree(runs / "lb-tiny", other)
    meta = json.loads((other / "experiment.json").read_text())
    (other / "experiment.json").write_text(json.dumps({**meta, "experiment_type": "soft-weighting"}))
    (tmp_path / "nostore").mkdir()
    (tmp_path / "nostore" / "experiment.json").write_text(json.dumps(meta))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "experiment.json").write_text(json.dumps(meta))
    ResultStore(tmp_path / "empty" / "results.sqlite").close()
    (tmp_path / "blank.md").write_text("\n  \n")
    (tmp_path / "outdir").mkdir()
    out = str(tmp_path / "out" / "lb.md")
    cases = [
        (["report", good, "--leaderboard", good], "not both"),
        (["report", "--leaderboard", good, "--out", out, "--reading", str(tmp_path / "blank.md")], "is empty"),
        (["report", "--leaderboard", good, "--out", str(tmp_path / "outdir")], "is a directory"),
        (["report", "--leaderboard", good, str(other), "--out", out], "is a 'soft-weighting' run"),
        (["report", "--leaderboard", str(tmp_path / "nostore"), "--out", out], "no results store at"),
        (["report", "--leaderboard", str(tmp_path / "empty"), "--out", out], "has no finished rows yet"),
    ]
    for argv, fragment in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("forgetkit: error: ") and fragment in err[0], (argv, err)
    assert not (tmp_path / "out").exists() and list((tmp_path / "outdir").iterdir()) == []


# -- seed noise, uncommitted code, the opening answer, the claims file ---------------------------


def test_within_noise_pairs_on_shared_seeds_else_compares_intervals():
    from forgetkit.bench.intervals import within_noise

    best = {0: 1.0, 1: 1.1, 2: 0.9}
    assert within_noise(best, {0: 1.2, 1: 0.9, 2: 1.3}) is True  # paired differences straddle 0
    assert within_noise(best, {0: 3.0, 1: 3.1, 2: 2.9}) is False  # +2 on every seed
    assert within_noise(best, {5: 1.0, 6: 1.3}) is True  # no shared seed: the 95 % intervals overlap
    assert within_noise(best, {5: 9.0, 6: 9.1}) is False
    assert within_noise({0: 1.0}, {0: 5.0}) is None  # one seed: no spread measured


def test_rows_from_uncommitted_code_are_shown_marked_and_never_ranked():
    st = _settings()
    lt = st[0].shapes["lt-g1"]
    for r in lt.entries["FaLW"].ok.values():
        r["provenance"]["commit"] = "abc1234+dirty"
    assert lt.entries["FaLW"].dirty and not lt.entries["FaLW"].ranked
    r = rank_shape(list(lt.entries.values()))
    assert "FaLW" not in r.ranks and r.best == "RL-tuned"
    assert "FaLW" not in league(lt, tuned=True)
    doc = render(st, None, None)
    assert "> **3 row(s) marked ‡ are not reproducible**" in doc
    falw = next(line for line in doc.splitlines() if "| FaLW ‡ |" in line)
    assert falw.startswith("| – | FaLW ‡ |") and "– (not ranked)" in falw and "`abc1234+dirty`" in falw
    assert "FaLW vs RL on long-tailed shapes: not measured" in doc  # left out of the reading too


def test_the_page_opens_with_the_best_method_per_shape_and_those_within_noise():
    doc = render(_settings(), None, None)
    head = doc.index("## Which method for which request shape")
    assert head < doc.index("### tiny-setting: `lt-g1`")
    # lt-g1 under equal tuning: FaLW 2, 4, 1 best; RL-tuned 3, 3.5, 2 within noise (p ≈ 0.42); SalUn one seed
    mean, half = t_interval([2.0, 4.0, 1.0])
    assert f"| tiny-setting | `lt-g1` (longtail) | **FaLW** | {mean:.2f} ± {half:.2f} | RL |" in doc
    assert "| tiny-setting | `one-class` (class) | **TRW** |" in doc
    assert "| none |" in doc  # RL's 4, 4, 4 is clearly above TRW's
    one = [Setting("one", "/somewhere/runs/one", "d", False, {"r": _shape(
        "r", "random", _entry("Retrain", [0]), _entry("RL", [2.0]), _entry("FT", [3.0]))})]
    doc = render(one, None, None)
    assert "| **RL** | 2.00 (n<2) | – (one seed: no spread measured) |" in doc
    assert "With one seed no spread was measured" in doc
    assert "/somewhere" not in doc and "run `one`" in doc  # run names, never a machine's paths


def test_claims_are_keyed_by_registry_names_and_unknown_names_are_refused(tmp_path):
    from forgetkit.bench.leaderboard import load_claims
    from forgetkit.bench.leaderboard.reading import CLAIMS_FILE

    text = CLAIMS_FILE.read_text()
    assert "FaLW" not in text.split("claims:")[1] and "RA-Targets" not in text  # registry keys, not shown names
    claims, (ours, rivals) = load_claims()
    assert ("FaLW", "RL", ("longtail",)) in [(c.method, c.baseline, c.kinds) for c in claims]
    assert (ours, rivals) == ("RA-Targets (ours)", ("RL", "SalUn"))
    bad = tmp_path / "claims.yaml"
    bad.write_text("claims:\n  - {method: nosuch, baseline: rl, kinds: [class], shapes: class}\nours: "
                   "{method: rl, against: [ft]}\n")
    with pytest.raises(ValueError, match="unknown method 'nosuch'"):
        load_claims(bad)


def test_a_store_written_before_rows_recorded_their_kind_reads_the_same(runs, tmp_path):
    import sqlite3

    from forgetkit.bench.leaderboard import load_setting

    old = tmp_path / "lb-tiny"
    shutil.copytree(runs / "lb-tiny", old)
    with sqlite3.connect(old / "results.sqlite") as db:
        for key, params in db.execute("SELECT key, params FROM results").fetchall():
            p = json.loads(params)
            assert p.pop("request_kind") in ("random", "class")
            db.execute("UPDATE results SET params = ? WHERE key = ?", (json.dumps(p), key))
    kinds = {s.name: s.kind for s in load_setting(runs / "lb-tiny").shapes.values()}
    assert kinds == {"random 10 %": "random", "class3": "class"}
    assert {s.name: s.kind for s in load_setting(old).shapes.values()} == kinds
    assert render([load_setting(old)], None, None) == render([load_setting(runs / "lb-tiny")], None, None)
