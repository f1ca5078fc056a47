import json
import sqlite3

import pytest

from forgetkit.bench.config import apply_overrides, parse_config, smoke
from forgetkit.bench.report import load_run, write_report
from forgetkit.bench.grid import paper_name, plan
from forgetkit.bench.runner import run_experiment
from forgetkit.cli import main

TINY = {
    "name": "tiny", "dataset": "digits", "model": {"name": "mlp", "options": {"hidden": 32, "depth": 1}},
    "train": {"epochs": 3, "lr": 0.1, "batch_size": 64},
    "requests": [{"kind": "longtail", "ratio": 0.2, "gamma": 1.0}, {"kind": "class", "classes": [3]}],
    "methods": [{"name": "ft", "options": {"epochs": 1}}, {"name": "ga", "options": {"epochs": 1, "lr": 1e-3}},
                {"name": "rl", "options": {"epochs": 1}}, {"name": "ga", "label": "GA-explode", "options": {"epochs": 1, "lr": 1e12}}],
    "seeds": [0],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = parse_config(TINY)
    report = run_experiment(cfg, out, show_progress=False).report
    return cfg, out, report


def test_rows_for_every_cell_and_failures_recorded(tiny_run):
    cfg, out, report = tiny_run
    rows = sqlite3.connect(out / "results.sqlite").execute("SELECT method, status, error FROM results").fetchall()
    assert len(rows) == len(plan(cfg)) == 2 * (2 + 4)
    failed = [r for r in rows if r[1] == "failed"]
    assert {r[0] for r in failed} == {"GA-explode"} and all("diverged" in r[2] for r in failed)
    text = report.read_text()
    assert "| Retrain |" in text and f"| {paper_name('ft')} |" in text and "Failed runs" in text and "GA-explode" in text
    assert (out / "probs_class3.png").exists()


def test_gaps_are_against_retrain(tiny_run):
    _, out, _ = tiny_run
    db = sqlite3.connect(out / "results.sqlite")
    rows = {(m, r): json.loads(x) for m, r, x in db.execute(
        "SELECT method, request, metrics FROM results WHERE status='ok'")}
    _, derived, _, _ = load_run(out)
    assert len(derived) == len(rows)
    for row in derived:
        met, ref = row["metrics"], rows[("Retrain", row["request"])]
        assert "AvgGap" not in rows[(row["method"], row["request"])]  # the store holds raw metrics only
        expect = sum(abs(met[k] - ref[k]) for k in ("FA", "RA", "TA", "MIA")) / 4
        assert met["AvgGap"] == pytest.approx(expect)
    assert rows[("Retrain", "class3")]["FA"] < 20  # a class the reference never saw


def test_rerun_skips_finished_rows_and_retries_failed(tiny_run, monkeypatch):
    cfg, out, _ = tiny_run
    import forgetkit.bench.executors as executors

    seen = []
    real = executors.execute_cell
    monkeypatch.setattr(executors, "execute_cell", lambda ws, cell, *a, **k: seen.append(cell) or real(ws, cell, *a, **k))
    summary = run_experiment(cfg, out, show_progress=False)
    assert {c.label for c in seen} == {"GA-explode"}
    assert [label.split(" / ")[0] for label, _ in summary.failed] == ["GA-explode"] * 2


def test_a_row_run_with_other_hyper_parameters_than_the_code_gives_now_is_run_again(tiny_run, tmp_path,
                                                                                      monkeypatch, capsys):
    import shutil

    import forgetkit.bench.executors as executors

    cfg, out, _ = tiny_run
    copy = tmp_path / "tiny"
    shutil.copytree(out, copy)
    with sqlite3.connect(copy / "results.sqlite") as db:  # as if RL's momentum default was another when it ran
        key, request, params = db.execute(
            "SELECT key, request, params FROM results WHERE method = 'RL' AND status = 'ok' LIMIT 1").fetchone()
        now = json.loads(params)["momentum"]
        db.execute("UPDATE results SET params = ? WHERE key = ?",
                   (json.dumps({**json.loads(params), "momentum": now / 2}), key))
    seen = []
    real = executors.execute_cell
    monkeypatch.setattr(executors, "execute_cell", lambda ws, cell, *a, **k: seen.append(cell) or real(ws, cell, *a, **k))
    summary = run_experiment(cfg, copy, show_progress=False)
    assert sorted(c.label for c in seen) == ["GA-explode", "GA-explode", "RL"]
    assert next(c for c in seen if c.label == "RL").key == key
    assert summary.rerun == [f"RL / {request} / seed 0: momentum {now / 2!r} -> {now!r}"]
    assert "running 1 finished rows again" in capsys.readouterr().err
    with sqlite3.connect(copy / "results.sqlite") as db:
        assert json.loads(db.execute("SELECT params FROM results WHERE key = ?", (key,)).fetchone()[0])["momentum"] == now
    seen.clear()
    assert run_experiment(cfg, copy, show_progress=False).rerun == [] and "RL" not in {c.label for c in seen}


def test_other_experiment_in_same_dir_is_refused(tiny_run):
    _, out, _ = tiny_run
    with pytest.raises(ValueError, match="holds results of experiment 'tiny'"):
        run_experiment(parse_config({**TINY, "name": "other"}), out, show_progress=False)


def test_report_rebuilds_from_store(tiny_run):
    _, out, report = tiny_run
    before = report.read_text()
    report.unlink()
    assert write_report(out).read_text() == before


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"requests\.0.*ratio"):
        parse_config({**TINY, "requests": [{"kind": "longtail", "gamma": 1}]})
    with pytest.raises(ValueError, match="train.epochs"):
        parse_config({**TINY, "train": {"epochs": "many"}})
    with pytest.raises(ValueError, match="bogus"):
        parse_config({**TINY, "bogus": 1})


def test_overrides_and_smoke():
    raw = apply_overrides(TINY, ["train.epochs=7", "methods.0.options.lr=0.5", "seeds=[1, 2]"])
    assert raw["train"]["epochs"] == 7 and raw["methods"][0]["options"]["lr"] == 0.5 and raw["seeds"] == [1, 2]
    s = smoke(raw)
    assert s["train"]["epochs"] == 1 and s["seeds"] == [1] and all(m["options"]["epochs"] == 1 for m in s["methods"])


def test_cli_methods_and_bad_config(tmp_path, capsys):
    assert main(["methods"]) == 0
    assert "rl" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrequests: []\nmethods: [{name: nope}]\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "requests" in err
    assert not (tmp_path / "o").exists()


def test_smoke_caps_attack_budgets_and_evaluator_shadows():
    raw = {**TINY, "methods": [{"name": "l2ul", "options": {"pgd_iters": 100}}, {"name": "rl"}],
           "metrics": {"extra": ["ulira"], "extra_options": {"ulira": {"shadows": 8, "train": {"epochs": 20, "lr": 0.1}}}}}
    s = smoke(raw)
    l2ul, rl = s["methods"]
    assert l2ul["options"] == {"pgd_iters": 10, "num_adv_images": 1, "epochs": 1}
    assert "pgd_iters" not in rl["options"]  # only options a method has are capped
    # U-LiRA's leave-one-model-out game needs 3 shadows of each kind: smoke stops there, not at 2
    assert s["metrics"]["extra_options"]["ulira"] == {"shadows": 3, "train": {"epochs": 1, "lr": 0.1}}
    assert raw["metrics"]["extra_options"]["ulira"]["shadows"] == 8  # the input is not mutated
    assert s["smoke"] is True and parse_config(s).smoke


def test_smoke_keeps_two_reported_requests_and_every_validation_request():
    reqs = [{"kind": "class", "classes": [c]} for c in range(5)] + [{"kind": "random", "fraction": 0.1, "role": "validation"}]
    s = smoke({**TINY, "requests": reqs})
    assert [r.get("role", "report") for r in s["requests"]] == ["report"] * 2 + ["validation"]
    assert [r.get("classes") for r in s["requests"][:2]] == [[0], [1]]


def test_paired_table_pairs_each_weighting_with_its_base_on_request_and_seed():
    from forgetkit.bench.report import paired_table

    def row(method, weighting, request, seed, gap):
        label = method if weighting == "uniform" else f"{method} + {weighting}"
        return {"method": label, "weighting": weighting, "request": request, "seed": seed,
                "params": {"base_label": method}, "metrics": {"AvgGap": gap}}

    rows = [row("RL", "uniform", "a", 0, 4.0), row("RL", "uniform", "a", 1, 2.0), row("RL", "uniform", "b", 0, 9.0),
            row("RL", "falw", "a", 1, 2.5), row("RL", "falw", "a", 0, 1.0), row("RL", "falw", "b", 0, 8.0),
            row("RL", "falw", "b", 1, 0.0),  # no base row for (b, 1): left out, not paired with another seed
            row("SalUn", "falw", "a", 0, 3.0)]  # no SalUn base at all: no line
    by_label = {}
    for r in rows:
        by_label.setdefault(r["method"], []).append(r)
    lines = paired_table(by_label)
    body = [line for line in lines if line.startswith("| RL + falw")]
    assert len(body) == 1 and not any(line.startswith("| SalUn") for line in lines)
    diffs = [1.0 - 4.0, 2.5 - 2.0, 8.0 - 9.0]  # (a,0), (a,1), (b,0)
    mean, sd = sum(diffs) / 3, (sum((d - sum(diffs) / 3) ** 2 for d in diffs) / 2) ** 0.5
    half = 4.302653 * sd / 3 ** 0.5  # t(0.975, 2 df) × sd / √n: "±" is the 95 % interval's half-width
    assert f"{mean:.2f} ± {half:.2f}" in body[0] and "| 2 / 3 |" in body[0] and "-3.00, +0.50, -1.00" in body[0]


def test_report_draws_where_the_forgotten_class_went(tmp_path):
    from forgetkit.bench.report import _plots

    def row(label, seed, shares):
        return {"method": label, "weighting": "-", "seed": seed, "key": f"{label}{seed}", "params": {},
                "metrics": {f"conf_to_{c}": v for c, v in shares.items()}}

    by_label = {"Retrain": [row("Retrain", 0, {"shirt": 80.0, "coat": 20.0})],
                "TRW": [row("TRW", 0, {"shirt": 100.0, "coat": 0.0})]}
    lines = _plots(tmp_path, "class 0", by_label, {"Retrain0": {}, "TRW0": {}})
    assert "![where the forgotten class went](confusion_class_0.png)" in lines
    assert (tmp_path / "confusion_class_0.png").stat().st_size > 0
    del by_label["Retrain"]  # nothing to compare with: no plot
    assert not any("confusion" in line for line in _plots(tmp_path, "x", by_label, {"TRW0": {}}))
