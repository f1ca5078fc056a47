"""``forgetkit audit RUN_DIR``: every row of a finished run re-audited from its stored scores."""
import json
import sqlite3

import numpy as np
import pytest

from forgetkit.cli.audit import audit_run
from forgetkit.bench.config import parse_config
from forgetkit.bench.runner import run_experiment
from forgetkit.bench.store import ResultStore
from forgetkit.cli import main
from forgetkit.audit import audit_scores, decode_scores, encode_scores

RUN = {"name": "audit-run", "dataset": "digits", "device": "cpu", "threads": 1, "heldout_fraction": 0.2,
       "model": {"name": "mlp", "options": {"hidden": 32, "depth": 1}},
       "train": {"epochs": 3, "lr": 0.1, "batch_size": 64},
       "requests": [{"kind": "random", "fraction": 0.1}, {"kind": "class", "classes": [3]}],
       "methods": [{"name": "ft", "options": {"epochs": 1}}], "seeds": [0], "metrics": {"audit": True}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    summary = run_experiment(parse_config(RUN), out, show_progress=False)
    assert not summary.failed
    return out


def _rows(out):
    with ResultStore(out / "results.sqlite") as st:
        return [(r, st.artifacts(r["key"])) for r in st.rows()]


def _reaudits(out):
    with ResultStore(out / "results.sqlite") as st:
        return st.audits()


def test_a_rows_audit_reports_the_rows_own_retain_accuracy_and_the_originals(run):
    """The audit takes RA from the row (and the original's from the Original row's measure) instead
    of running both models over the retain set again: the numbers must be those."""
    rows = _rows(run)
    original_ra = {r["request"]: r["metrics"]["RA"] for r, _ in rows if r["method"] == "Original"}
    for r, a in rows:
        retain = a["audit"]["accuracy"]["retain"]
        assert retain["after"] == pytest.approx(r["metrics"]["RA"])
        if r["method"] != "Original":
            assert retain["before"] == pytest.approx(original_ra[r["request"]])


def test_scores_round_trip_compactly():
    rng = np.random.default_rng(0)
    d = {"forget": rng.normal(size=101) * 10, "forget_correct": rng.random(101) > 0.3, "forget_y": rng.integers(0, 10, 101),
         "heldout": rng.normal(size=57), "heldout_correct": rng.random(57) > 0.5, "heldout_y": rng.integers(0, 10, 57)}
    enc = encode_scores(d)
    assert len(json.dumps(enc)) < 8 * (101 + 57) + 300  # about 5.5 bytes a sample, not a JSON list of floats
    back = decode_scores(json.loads(json.dumps(enc)))
    for k in ("forget_correct", "heldout_correct", "forget_y", "heldout_y"):
        assert np.array_equal(back[k], d[k])
    assert np.allclose(back["forget"], d["forget"], rtol=1e-6) and back["forget"].dtype == np.float64
    with pytest.raises(ValueError, match="damaged"):
        decode_scores(enc | {"forget": "not base64!"})
    with pytest.raises(ValueError, match="encoding"):
        decode_scores({"forget": [1.0]})


def test_every_row_is_reaudited_from_the_store_and_matches_the_audit_made_during_the_run(run, tmp_path):
    before = {r["key"]: (r, a) for r, a in _rows(run)}
    done = audit_run(run, out=tmp_path / "re")
    assert len(done) == len(before) == 6 and not [d for d in done if "skipped" in d]
    for d in done:
        r, a = before[d["key"]]
        res, old = d["result"], a["audit"]
        # float32 scores: the same AUC as the float64 audit of the run, to rounding
        assert res.overall.auc == pytest.approx(old["after"]["overall"]["auc"], abs=1e-3)
        assert res.verdict == old["verdict"]
        assert (res.before is None) == (r["method"] == "Original")
        for name in ("audit.md", "audit.html", "audit.json"):
            assert d["paths"][name].is_file()
        assert json.loads(d["paths"]["audit.json"].read_text())["verdict"] == res.verdict
    cls = [d for d in done if d["result"].settings["forget_classes"] == [3] and d["method"] == "FT"][0]
    assert cls["result"].per_class[0].removed  # the class removed whole is still judged by its own rule
    after = {r["key"]: (r, a) for r, a in _rows(run)}
    assert after == before  # the raw rows are never rewritten: the re-audit writes its own records
    assert all(rec["audit"]["settings"]["source"].startswith("stored scores") for rec in _reaudits(run).values())
    assert set(_reaudits(run)) == set(before)


def test_cli_on_a_run_dir_and_a_margin_that_changes_verdicts(run, tmp_path, capsys):
    assert main(["audit", str(run), "--out", str(tmp_path / "cli"), "--margin", "0.4", "--target-margin", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "6 rows audited" in out and "Original /" in out
    records = _reaudits(run)
    assert len(records) == 6
    assert all(a["audit"]["settings"]["margin"] == 0.4 and a["audit"]["settings"]["target_margin"] == 0.3
               for a in records.values())
    assert all(a["audit_verdict"] == a["audit"]["verdict"] for a in records.values())
    assert len(list((tmp_path / "cli").glob("*/audit.html"))) == 6


def test_no_store_leaves_the_store_untouched(run, tmp_path):
    db = run / "results.sqlite"
    snap = [sqlite3.connect(db).execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in ("results", "audits")]
    audit_run(run, out=tmp_path / "ns", store=False, margin=0.3)
    assert [sqlite3.connect(db).execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("results", "audits")] == snap


def test_the_report_step_renders_pages_from_the_store_with_the_newest_reaudit(run, tmp_path):
    """Cells store audit data only; the report step renders the pages, from a re-audit's record when there is one."""
    from forgetkit.bench.report import write_report

    audit_run(run, out=tmp_path / "re", margin=0.45)
    write_report(run)
    pages = list((run / "audits").glob("*/audit.json"))
    assert len(pages) == 6 and all(json.loads(p.read_text())["settings"]["margin"] == 0.45 for p in pages)
    original = [p.with_name("audit.md").read_text() for p in pages if p.parent.name.startswith("Original")]
    assert original and all("no unlearning" in t and "training time (no unlearning)" in t for t in original)
    assert all("How the verdict was decided" in p.with_name("audit.md").read_text() for p in pages)


def test_old_stores_without_page_data_still_reaudit(run, tmp_path):
    """A store written before rows kept ``audit_page``: the re-audit still runs, pages named from the row."""
    from forgetkit.audit.runs import reaudit_rows

    rows = [r for r, _ in _rows(run)]
    arts = {r["key"]: {k: v for k, v in a.items() if k != "audit_page"} for r, a in _rows(run)}
    done = reaudit_rows(rows, arts, original_label="Original")
    assert all("result" in d and d["page"].endswith(f"seed{d['seed']}") for d in done)


def test_bad_run_dirs_are_refused_and_nothing_written(run, tmp_path, capsys):
    assert main(["audit", str(tmp_path / "nowhere")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["audit", str(run), "--checkpoint", "x.pt"]) == 2
    assert "--checkpoint is for auditing a checkpoint" in capsys.readouterr().err
    assert main(["audit"]) == 2
    assert "give RUN_DIR" in capsys.readouterr().err
    # a run made without metrics.audit keeps no scores: a clear error, no report directory
    plain = tmp_path / "plain"
    run_experiment(parse_config(RUN | {"name": "plain", "metrics": {}, "requests": RUN["requests"][:1]}), plain,
                   show_progress=False)
    with pytest.raises(ValueError, match="metrics.audit: true"):
        audit_run(plain)
    assert not (plain / "audits").exists()


def test_before_and_after_must_describe_the_same_samples():
    d = {"forget": np.zeros(30), "forget_correct": np.ones(30, bool), "forget_y": np.zeros(30, int),
         "heldout": np.zeros(30), "heldout_correct": np.ones(30, bool), "heldout_y": np.zeros(30, int)}
    with pytest.raises(ValueError, match="same samples"):
        audit_scores(d, d | {"forget_y": np.ones(30, int)}, num_classes=2)
    with pytest.raises(ValueError, match="differ in length"):
        audit_scores(d | {"forget_y": np.zeros(29, int)}, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        audit_scores(d, num_classes=0)


def test_a_class_absent_from_the_retain_set_is_judged_as_removed_whole():
    """A steep long-tailed or mixed request empties some classes: with ``retain`` the audit finds them."""
    import torch

    from forgetkit.data.base import Split
    from forgetkit.audit import audit

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(300, 1, 4, 4, generator=g), torch.arange(300) % 3
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    forget = Split(x[:120], y[:120])
    retain = Split(x[120:200][y[120:200] != 1], y[120:200][y[120:200] != 1])  # class 1 has nothing left
    r = audit(model, forget, Split(x[200:], y[200:]), retain=retain, n_boot=10)
    assert r.settings["forget_classes"] == [1]
    assert [e.cls for e in r.per_class if e.removed] == [1]
    assert audit(model, forget, Split(x[200:], y[200:]), n_boot=10).settings["forget_classes"] == []


def test_a_run_still_holding_its_directory_is_refused_before_any_report(run, tmp_path):
    from forgetkit.locks import DirectoryLock

    with DirectoryLock(run):
        with pytest.raises(ValueError, match="--no-store"):
            audit_run(run, out=tmp_path / "busy")
        assert not (tmp_path / "busy").exists()
        assert len(audit_run(run, out=tmp_path / "free", store=False)) == 6  # reports only: allowed


def test_reports_land_where_the_run_put_its_own(run, tmp_path):
    """Without --out the re-audit replaces the run's own report pages, one per row, no duplicates."""
    made = sorted(p.parent.name for p in (run / "audits").glob("*/audit.md"))
    audit_run(run, store=False)
    assert sorted(p.parent.name for p in (run / "audits").glob("*/audit.md")) == made and len(made) == 6
