"""Live feedback: progress="metrics" prints one line per epoch with forget/retain accuracy that match
the model's; off by default; cheap (a capped fixed sample) and leaves the model's mode as it was."""
import io
import re

import numpy as np
import pytest
import torch

from forgetkit import unlearn
from forgetkit.bench.progress import METRICS, EpochMetrics, Progress
from forgetkit.data.base import Split, as_float
from forgetkit.testing import conformance_problem
from forgetkit.unlearn.context import UnlearnContext

LINE = re.compile(r"^  unlearning epoch (\d+)  loss (-?[\d.]+)  forget acc ([\d.]+) % \(n=(\d+)\)  "
                  r"retain acc ([\d.]+) % \(n=(\d+)\)$")


@pytest.fixture(scope="module")
def problem():
    p = conformance_problem()
    x = torch.cat([p.forget.x[:40], p.retain.x[:260]])
    y = torch.cat([p.forget.y[:40], p.retain.y[:260]])
    return p.model, x, y


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return 100.0 * (model(as_float(x)).argmax(1) == y).float().mean().item()


def test_metrics_prints_one_line_per_epoch_with_the_models_accuracy(problem, capsys):
    model, x, y = problem
    res = unlearn(model, (x, y), np.arange(40), method="rl", epochs=3, lr=0.05, progress=METRICS)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    rows = [LINE.match(line).groups() for line in lines]
    assert [int(r[0]) for r in rows] == [1, 2, 3] and {(r[3], r[5]) for r in rows} == {("40", "260")}
    losses = [float(r[1]) for r in rows]
    assert [round(v, 4) for v in losses] == [round(e["loss"], 4) for e in res.info["history"]]
    fa, ra = float(rows[-1][2]), float(rows[-1][4])
    assert fa == pytest.approx(accuracy(res.model, x[:40], y[:40]), abs=0.051)  # the last line is the result's
    assert ra == pytest.approx(accuracy(res.model, x[40:], y[40:]), abs=0.051)
    assert fa < accuracy(model, x[:40], y[:40]) - 50 and ra > 80  # plausible: RL forgets, keeps the rest


def test_off_by_default_prints_nothing(problem, capsys):
    model, x, y = problem
    unlearn(model, (x, y), np.arange(40), method="rl", epochs=2)
    assert capsys.readouterr().out == ""


def test_a_method_without_epochs_prints_one_line_at_the_end(problem, capsys):
    model, x, y = problem
    unlearn(model, (x, y), np.arange(40), method="ssd", progress=METRICS)
    (line,) = capsys.readouterr().out.splitlines()
    assert re.match(r"^  ssd done  forget acc [\d.]+ % \(n=40\)  retain acc [\d.]+ % \(n=260\)$", line)


def test_bad_progress_values():
    with pytest.raises(ValueError, match="progress must be a function .* or 'metrics', got 'loud'"):
        unlearn(torch.nn.Linear(2, 2), (torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])), [0], progress="loud")
    with pytest.raises(ValueError, match="progress must be True, False or 'metrics', got 'bars'"):
        Progress("bars")
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        EpochMetrics(samples=0)


def test_sample_is_capped_fixed_and_the_mode_restored(problem):
    model, x, y = problem
    ctx = UnlearnContext(original=model, forget=Split(x[:40], y[:40]), retain=Split(x[40:], y[40:]), num_classes=10)
    lines = []
    em = EpochMetrics(write=lines.append, samples=25)
    model.train()
    em.epoch_end(model, ctx, 0, {"loss": 0.5})
    em.epoch_end(model, ctx, 1, {"loss": 0.25})
    assert model.training
    assert "forget acc" in lines[0] and "(n=25)" in lines[0] and lines[0].count("(n=25)") == 2
    assert lines[0].split("loss")[1][8:] == lines[1].split("loss")[1][8:]  # same samples, same model: same numbers


def test_sweep_progress_adds_metrics_only_when_asked(problem):
    model, x, y = problem
    out = io.StringIO()
    on = Progress(METRICS, tty=False, stream=out)
    callback = on.steps("unlearning")
    assert isinstance(callback, EpochMetrics) and not isinstance(on.steps("training"), EpochMetrics)
    ctx = UnlearnContext(original=model, forget=Split(x[:40], y[:40]), num_classes=10)
    callback.epoch_end(model, ctx, 0, {"loss": 1.0})
    assert re.match(r"^  unlearning epoch 1  loss 1.0000  forget acc [\d.]+ % \(n=40\)$", out.getvalue())
    assert not isinstance(Progress(True, tty=False).steps("unlearning"), EpochMetrics)
    assert Progress(False).steps("unlearning") is None


SWEEP = """
name: live
dataset: digits
model: {name: mlp, options: {hidden: 16, depth: 1}}
train: {epochs: 2, lr: 0.1, batch_size: 64}
requests: [{kind: class, classes: [3]}]
methods: [{name: rl, options: {epochs: 2, lr: 0.05}}]
seeds: [0]
"""


def epoch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "unlearning epoch" in line]


def test_forgetkit_run_progress_metrics(tmp_path, capsys):
    from forgetkit.cli import main

    cfg = tmp_path / "live.yaml"
    cfg.write_text(SWEEP)
    assert main(["run", str(cfg), "--out", str(tmp_path / "on"), "--progress", "metrics"]) == 0
    lines = epoch_lines(capsys.readouterr().out)
    assert [line.split("unlearning epoch ")[1].split()[0] for line in lines] == ["1", "2"], lines
    assert all(line.startswith("  RL seed 0 request 0: unlearning epoch") for line in lines)  # names its cell
    assert all(re.search(r"forget acc [\d.]+ % \(n=\d+\)  retain acc [\d.]+ % \(n=512\)", line) for line in lines)
    assert main(["run", str(cfg), "--out", str(tmp_path / "off")]) == 0  # sweeps: off by default
    assert epoch_lines(capsys.readouterr().out) == []
    assert main(["run", str(cfg), "--out", str(tmp_path / "q"), "--quiet", "--progress", "metrics"]) == 2
    assert "--quiet and --progress metrics contradict" in capsys.readouterr().err


def test_config_progress_metrics_is_display_only(tmp_path, capsys):
    from forgetkit.bench.config import parse_config, yaml_load
    from forgetkit.bench.grid import plan
    from forgetkit.cli import main

    raw = yaml_load(SWEEP)
    assert [c.key for c in plan(parse_config({**raw, "progress": "metrics"}))] == [c.key for c in plan(parse_config(raw))]
    assert "progress" not in parse_config({**raw, "progress": "metrics"}).model_dump()
    with pytest.raises(ValueError, match="progress"):
        parse_config({**raw, "progress": "loud"})
    cfg = tmp_path / "live.yaml"
    cfg.write_text(SWEEP + "progress: metrics\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "on")]) == 0
    assert len(epoch_lines(capsys.readouterr().out)) == 2
    assert main(["run", str(cfg), "--out", str(tmp_path / "bars"), "--progress", "bars"]) == 0  # the flag wins
    assert epoch_lines(capsys.readouterr().out) == []
