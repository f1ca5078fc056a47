"""Hyper-parameter search with a declared selection rule, and versioned recipes of its outcome.

A config's ``tune:`` section names one method (by label), its search space, the number of trials
and the rule. Trials run only on the ``role: validation`` requests (turned into reported ones for
the trial runs), so the reported requests never influence the choice; the chosen settings are then
run on the reported requests and seeds. The Optuna study lives in SQLite beside the results, so an
interrupted ``tune`` resumes where it stopped.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import yaml

from .config import ExperimentConfig, load_raw, parse_config, smoke as smoke_raw
from .store import ResultStore

RULES = {"avg_gap_on_validation": "lowest mean Avg. Gap to Retrain over the validation requests and seeds"}
TUNE_KEYS = {"method", "space", "trials", "rule"}
SMOKE_TRIALS = 3


def split_tune(raw: dict) -> tuple[dict, dict]:
    """(tune section, the rest of the config); the experiment schema forbids unknown fields."""
    raw = copy.deepcopy(raw)
    spec = raw.pop("tune", None)
    if not isinstance(spec, dict):
        raise ValueError("tune: the config needs a 'tune:' section (method, space, trials, rule)")
    unknown = sorted(set(spec) - TUNE_KEYS)
    if unknown:
        raise ValueError(f"tune: unknown field(s) {unknown}; known: {sorted(TUNE_KEYS)}")
    return spec, raw


def check_spec(spec: dict, cfg: ExperimentConfig) -> int:
    """Validate the tune section against the experiment; returns the index of the tuned method."""
    from ..methods import METHODS

    labels = [m.display for m in cfg.methods]
    if spec.get("method") not in labels:
        raise ValueError(f"tune.method: {spec.get('method')!r} is not a method label of the config; "
                         f"labels: {labels}")
    mi = labels.index(spec["method"])
    options = set(METHODS.get(cfg.methods[mi].name).__dataclass_fields__)
    space = spec.get("space")
    if not isinstance(space, dict) or not space:
        raise ValueError("tune.space: give at least one option, e.g. {lr: {low: 1e-4, high: 1e-1, log: true}}")
    for name, dim in space.items():
        if name not in options:
            raise ValueError(f"tune.space.{name}: method {cfg.methods[mi].name!r} has no such option; "
                             f"options: {sorted(options)}")
        if not isinstance(dim, dict) or not ({"choices"} <= set(dim) or {"low", "high"} <= set(dim)):
            raise ValueError(f"tune.space.{name}: give either 'choices' or 'low' and 'high'")
    if spec.get("rule", "avg_gap_on_validation") not in RULES:
        raise ValueError(f"tune.rule: unknown rule {spec['rule']!r}; known: {sorted(RULES)}")
    trials = spec.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"tune.trials: must be a positive integer, got {trials!r}")
    if not any(r.role == "validation" for r in cfg.requests):
        raise ValueError("tune needs at least one request with 'role: validation' to select on; "
                         "the reported requests are never used for selection")
    return mi


def _suggest(trial, name: str, dim: dict):
    if "choices" in dim:
        return trial.suggest_categorical(name, list(dim["choices"]))
    if isinstance(dim["low"], int) and isinstance(dim["high"], int) and not dim.get("log", False):
        return trial.suggest_int(name, dim["low"], dim["high"])
    return trial.suggest_float(name, float(dim["low"]), float(dim["high"]), log=bool(dim.get("log", False)))


def with_options(raw: dict, mi: int, options: dict) -> dict:
    """``raw`` with method ``mi``'s options updated."""
    raw = copy.deepcopy(raw)
    raw["methods"][mi].setdefault("options", {}).update(options)
    return raw


def validation_config(raw: dict, mi: int, options: dict) -> ExperimentConfig:
    """The trial experiment: only the tuned method, only the validation requests (run as reported)."""
    trial = with_options(raw, mi, options)
    trial["name"] = f"{raw['name']}-tune"
    trial["methods"] = [trial["methods"][mi]]
    trial["requests"] = [{**r, "role": "report"} for r in raw["requests"] if r.get("role") == "validation"]
    return parse_config(trial)


def trial_score(cfg: ExperimentConfig, out_dir: Path) -> float:
    """The rule's value for the trial config's method rows: mean AvgGap; inf if any row failed."""
    from .derived import with_derived
    from .grid import plan

    keys = {c.key for c in plan(cfg) if not c.is_reference}
    with ResultStore(out_dir / "results.sqlite") as store:
        stored = store.rows()
        artifacts = {r["key"]: store.artifacts(r["key"]) for r in stored if r["status"] == "ok"}
    rows = [r for r in with_derived(stored, artifacts, cfg.metrics.deviation_tau) if r["key"] in keys]
    gaps = [r["metrics"].get("AvgGap", math.inf) if r["status"] == "ok" else math.inf for r in rows]
    return sum(gaps) / len(gaps) if gaps and len(rows) == len(keys) else math.inf


def config_hash(raw: dict) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare(config: str | Path | dict, out_dir: str | Path, *, smoke: bool = False) -> tuple[dict, dict, int]:
    """(tune section, validated experiment as a plain dict, tuned method index); checks everything first.

    ``smoke`` shrinks the experiment as ``run --smoke`` does and caps the study at 3 trials.
    """
    spec, raw = split_tune(load_raw(config) if isinstance(config, (str, Path)) else config)
    if smoke:
        raw = smoke_raw(raw)
    cfg = parse_config(raw)
    mi = check_spec(spec, cfg)
    if smoke:
        spec["trials"] = min(spec.get("trials", SMOKE_TRIALS), SMOKE_TRIALS)
    raw = cfg.model_dump(exclude_none=True)
    if not cfg.cache_dir:
        raw["cache_dir"] = str(Path(out_dir) / ".forgetkit-cache")
    return spec, raw, mi


def tune(config: str | Path | dict, out_dir: str | Path, *, n_trials: int | None = None, smoke: bool = False,
         show_progress: bool = False) -> Path:
    """Run (or resume) the study, re-run the best settings on the reported requests; returns tune_report.md."""
    import optuna

    from .runner import run_experiment

    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise ValueError(f"--trials must be a positive number of trials, got {n_trials!r}")
    spec, raw, mi = prepare(config, out_dir, smoke=smoke)
    cfg = parse_config(raw)
    n_trials = spec.get("trials", 20) if n_trials is None else n_trials
    rule = spec.get("rule", "avg_gap_on_validation")
    out_dir = Path(out_dir)
    trials_dir = out_dir / "trials"
    out_dir.mkdir(parents=True, exist_ok=True)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=f"{cfg.name}/{spec['method']}", direction="minimize",
                                storage=f"sqlite:///{out_dir / 'tune.sqlite'}", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=0))
    _fail_stale(study)

    def objective(trial) -> float:
        params = {name: _suggest(trial, name, dim) for name, dim in spec["space"].items()}
        trial_cfg = validation_config(raw, mi, params)
        run_experiment(trial_cfg, trials_dir, show_progress=show_progress)
        return trial_score(trial_cfg, trials_dir)

    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if n_trials > done:
        study.optimize(objective, n_trials=n_trials - done)
    best = study.best_trial
    final_raw = with_options(raw, mi, best.params)
    final_report = run_experiment(parse_config(final_raw), out_dir / "final", show_progress=show_progress).report
    recipe = save_recipe(out_dir / "recipes", cfg.methods[mi].model_dump(exclude_none=True), best.params,
                         {"config": cfg.name, "config_hash": config_hash(raw), "rule": rule, "smoke": smoke,
                          "trials": len(_complete(study)), "best_value": best.value,
                          "space": spec["space"], "validation_requests": [
                              r for r in raw["requests"] if r.get("role") == "validation"]})
    return write_tune_report(out_dir, study, spec, rule, final_report, recipe, smoke)


def _complete(study) -> list:
    import optuna

    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def _fail_stale(study) -> None:
    """Trials left RUNNING by a killed tuner will never finish: mark them failed so they are redone."""
    import optuna

    for t in study.trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def save_recipe(recipes_dir: Path, method: dict, params: dict, provenance: dict) -> Path:
    """Write ``<label>-v<N>.yaml``; an identical recipe is reused, a different one gets the next version."""
    recipes_dir.mkdir(parents=True, exist_ok=True)
    label = method.get("label") or method["name"]
    body = {"method": method["name"], "label": label,
            "options": {**method.get("options", {}), **params}, "tuned": provenance}
    version = 1
    while (path := recipes_dir / f"{label}-v{version}.yaml").exists():
        if yaml.safe_load(path.read_text()) == {**body, "version": version}:
            return path
        version += 1
    path.write_text(yaml.safe_dump({"version": version, **body}, sort_keys=False))
    return path


def apply_recipe(raw: dict, recipe_path: str | Path) -> dict:
    """``raw`` with the recipe's options set on the method of the same label (``forgetkit run --recipe``)."""
    if not Path(recipe_path).exists():
        raise FileNotFoundError(f"recipe {recipe_path} does not exist")
    recipe = load_raw(recipe_path)
    missing = sorted({"method", "label", "options"} - set(recipe))
    if missing:
        raise ValueError(f"recipe {recipe_path} lacks the field(s) {missing}; a recipe is the YAML that "
                         "`forgetkit tune` writes under recipes/")
    if not isinstance(recipe["options"], dict):
        raise ValueError(f"recipe {recipe_path}: options must be a mapping, got {recipe['options']!r}")
    raw = copy.deepcopy(raw)
    matches = [m for m in raw.get("methods", []) if (m.get("label") or m.get("name")) == recipe["label"]]
    if not matches:
        raise ValueError(f"recipe {recipe_path}: the config has no method labelled {recipe['label']!r}")
    for m in matches:
        if m["name"] != recipe["method"]:
            raise ValueError(f"recipe {recipe_path} is for method {recipe['method']!r}, "
                             f"but {recipe['label']!r} is {m['name']!r}")
        m["options"] = {**m.get("options", {}), **recipe["options"]}
        smoke_tuned = bool((recipe.get("tuned") or {}).get("smoke"))
        m["recipe"] = f"{Path(recipe_path).name}" + (" (smoke-tuned: not a result)" if smoke_tuned else "")
    return raw


def write_tune_report(out_dir: Path, study, spec: dict, rule: str, final_report: Path, recipe: Path,
                      smoke: bool = False) -> Path:
    """tune_report.md: the rule, the search space, the number of trials, every trial, the choice."""
    trials = _complete(study)
    names = list(spec["space"])
    lines = [f"# Tuning {spec['method']}" + (" (smoke run)" if smoke else ""), ""]
    if smoke:
        lines += ["> **Smoke run**: data, epochs and trials were shrunk by `--smoke`; the recipe below is "
                  "marked smoke-tuned and is not a tuning result.", ""]
    lines += [
             f"- Selection rule: `{rule}` — {RULES[rule]}; the reported requests are never used to select.",
             f"- Search space: `{json.dumps(spec['space'])}`",
             f"- Trials: {len(trials)} completed (Optuna TPE, seed 0; study in `tune.sqlite`)",
             f"- Chosen: `{json.dumps(study.best_params)}` (trial {study.best_trial.number}, "
             f"value {study.best_value:.4g})",
             f"- Recipe: `{recipe.relative_to(out_dir)}`",
             f"- Report of the chosen settings on the reported requests: `{final_report.relative_to(out_dir)}`",
             "", "| trial | " + " | ".join(names) + " | value |", "|---" * (len(names) + 2) + "|"]
    for t in trials:
        cells = [f"{t.params[n]:.4g}" if isinstance(t.params[n], float) else str(t.params[n]) for n in names]
        lines.append(f"| {t.number} | " + " | ".join(cells) + f" | {t.value:.4g} |")
    path = out_dir / "tune_report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
