"""Hyper-parameter search with a declared selection rule, and versioned recipes of its outcome.

A config's ``tune:`` section names one method (``method:`` a label, with its ``space``) or several
(``methods: all`` or a list of labels, each searched over its declared ``Method.tune_space``), the
number of trials (the same for every method: an equal budget) and the rule. Trials run only on
the ``role: validation`` requests that apply to the method (turned into reported ones for the trial
runs), on ``tune.seeds`` when given, so the reported requests never influence the choice. One
method: the chosen settings are then run on the reported requests. Several (the leaderboard): each
choice is written to ``tune.recipes`` and ``forgetkit run`` on the same config runs a
``<label>-tuned`` row beside every reference-default row. Optuna studies live in SQLite beside
the results, so an interrupted ``tune`` resumes where it stopped.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from pathlib import Path

import yaml

from ..files import atomic_write
from .config import ExperimentConfig, load_raw, parse_config, smoke as smoke_raw
from .store import ResultStore, check_dir, check_sqlite_file, check_store_file

RULES = {"avg_gap_on_validation": "lowest mean Avg. Gap to Retrain over the validation requests and seeds",
         "avg_gap_and_mia_nn_on_validation": "lowest mean gap to Retrain over the validation requests and seeds: "
                                             "Avg. Gap, and on class requests the mean of the five gaps FA, RA, TA, "
                                             "MIA-Efficacy and MIA-NN"}
TUNE_KEYS = {"method", "methods", "space", "trials", "rule", "seeds", "recipes"}
SMOKE_TRIALS = 3
SAMPLER_SEED = 0
STUDY_FILE = "tune.sqlite"
OPTUNA_TABLES = {"studies": (), "trials": ()}
"""tables every Optuna storage has: a tune.sqlite without them is another program's file"""
TUNED_SUFFIX = "-tuned"
"""a tuned row's label: the reference-default row's label plus this"""


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


def check_spec(spec: dict, cfg: ExperimentConfig) -> dict[int, dict]:
    """Validate the tune section against the experiment; returns {tuned method index: its search space}."""
    from ..methods import METHODS
    from .grid import applies

    labels = [m.display for m in cfg.methods]
    if ("method" in spec) == ("methods" in spec):
        raise ValueError("tune: give either 'method' (one label, with 'space') or 'methods' (all, or a list of "
                         "labels, each searched over its declared tune_space)")
    if "method" in spec:
        if spec["method"] not in labels:
            raise ValueError(f"tune.method: {spec.get('method')!r} is not a method label of the config; "
                             f"labels: {labels}")
        mi = labels.index(spec["method"])
        space = spec.get("space")
        if not isinstance(space, dict) or not space:
            raise ValueError("tune.space: give at least one option, e.g. {lr: {low: 1e-4, high: 1e-1, log: true}}")
        spaces = {mi: space}
    else:
        if "space" in spec:
            raise ValueError("tune.space goes with a single 'method'; with 'methods' each method is searched over "
                             "its declared tune_space (`Method.tune_space`)")
        wanted = spec["methods"]
        if wanted == "all":
            wanted = labels
        if not isinstance(wanted, list) or not wanted or not all(isinstance(w, str) for w in wanted):
            raise ValueError(f"tune.methods: give 'all' or a list of method labels, got {spec['methods']!r}")
        unknown = [w for w in wanted if w not in labels]
        if unknown:
            raise ValueError(f"tune.methods: {unknown} are not method labels of the config; labels: {labels}")
        spaces = {labels.index(w): METHODS.get(cfg.methods[labels.index(w)].name).tune_space for w in wanted}
        empty = [labels[mi] for mi, sp in spaces.items() if not sp]
        if empty:
            raise ValueError(f"tune.methods: {empty} declare no tune_space; give them one or leave them out")
    for mi, space in spaces.items():
        options = set(METHODS.get(cfg.methods[mi].name).__dataclass_fields__)
        for name, dim in space.items():
            if name not in options:
                raise ValueError(f"tune.space.{name}: method {cfg.methods[mi].name!r} has no such option; "
                                 f"options: {sorted(options)}")
            if not isinstance(dim, dict) or not ({"choices"} <= set(dim) or {"low", "high"} <= set(dim)):
                raise ValueError(f"tune.space.{name}: give either 'choices' or 'low' and 'high'")
    rule = spec.get("rule", "avg_gap_on_validation")
    if rule not in RULES:
        raise ValueError(f"tune.rule: unknown rule {rule!r}; known: {sorted(RULES)}")
    trials = spec.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"tune.trials: must be a positive integer, got {trials!r}")
    seeds = spec.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds
                              or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds)):
        raise ValueError(f"tune.seeds: give a list of integer seeds for the trials, got {seeds!r}")
    if seeds is not None and set(seeds) & set(cfg.seeds):
        raise ValueError(f"tune.seeds {sorted(set(seeds) & set(cfg.seeds))} are also reported seeds; tune on "
                         "seeds that are never reported")
    validation = [r for r in cfg.requests if r.role == "validation"]
    if not validation:
        raise ValueError("tune needs at least one request with 'role: validation' to select on; "
                         "the reported requests are never used for selection")
    for mi in spaces:
        if not any(applies(cfg.methods[mi].name, r.kind) for r in validation):
            raise ValueError(f"tune: no validation request applies to {labels[mi]!r} (it forgets whole classes); "
                             "add a class request with role: validation")
    if rule == "avg_gap_and_mia_nn_on_validation" and any(r.kind == "class" for r in validation) \
            and "mia_nn" not in cfg.metrics.extra:
        raise ValueError("tune.rule avg_gap_and_mia_nn_on_validation needs the MIA-NN gap: add mia_nn to "
                         "metrics.extra")
    return spaces


def _suggest(trial, name: str, dim: dict):
    if "choices" in dim:
        return trial.suggest_categorical(name, list(dim["choices"]))
    if isinstance(dim["low"], int) and isinstance(dim["high"], int):  # an integer range stays integer, log or not
        return trial.suggest_int(name, dim["low"], dim["high"], log=bool(dim.get("log", False)))
    return trial.suggest_float(name, float(dim["low"]), float(dim["high"]), log=bool(dim.get("log", False)))


def with_options(raw: dict, mi: int, options: dict) -> dict:
    """``raw`` with method ``mi``'s options updated."""
    raw = copy.deepcopy(raw)
    raw["methods"][mi].setdefault("options", {}).update(options)
    return raw


def validation_config(raw: dict, mi: int, options: dict, seeds: list[int] | None = None,
                      rule: str = "avg_gap_on_validation") -> ExperimentConfig:
    """The trial experiment: only the tuned method, only the validation requests that apply to it
    (run as reported), on ``seeds`` when given, with only the metrics ``rule`` reads."""
    from .grid import applies

    trial = with_options(raw, mi, options)
    trial["name"] = f"{raw['name']}-tune"
    trial["methods"] = [trial["methods"][mi]]
    trial["requests"] = [{**r, "role": "report"} for r in raw["requests"]
                         if r.get("role") == "validation" and applies(trial["methods"][0]["name"], r["kind"])]
    if seeds is not None:
        trial["seeds"] = list(seeds)
    trial["metrics"] = _rule_metrics(trial.get("metrics") or {}, rule)
    return parse_config(trial)


def _rule_metrics(metrics: dict, rule: str) -> dict:
    """A trial computes what its rule reads and nothing more: no audit, no attack but MIA-NN for its rule."""
    keep = ["mia_nn"] if rule == "avg_gap_and_mia_nn_on_validation" and "mia_nn" in metrics.get("extra", []) else []
    options = {k: v for k, v in (metrics.get("extra_options") or {}).items() if k in keep}
    return {**metrics, "extra": keep, "extra_options": options, "audit": False}


def row_score(metrics: dict, request_kind: str, rule: str) -> float:
    """One validation row's value under the rule (inf where a needed metric is missing)."""
    gap = metrics.get("AvgGap", math.inf)
    if rule == "avg_gap_and_mia_nn_on_validation" and request_kind == "class":
        return (4 * gap + metrics.get("MIA_NN_gap", math.inf)) / 5
    return gap


def trial_score(cfg: ExperimentConfig, out_dir: Path, rule: str = "avg_gap_on_validation") -> float:
    """The rule's value for the trial config's method rows: their mean row score; inf if any row failed."""
    from .derived import with_derived
    from .grid import plan

    cells = {c.key: cfg.requests[c.request].kind for c in plan(cfg) if not c.is_reference}
    with ResultStore(out_dir / "results.sqlite") as store:
        stored = store.rows()
        artifacts = {r["key"]: store.artifacts(r["key"]) for r in stored if r["status"] == "ok"}
    rows = [r for r in with_derived(stored, artifacts, cfg.metrics.deviation_tau) if r["key"] in cells]
    scores = [row_score(r["metrics"], cells[r["key"]], rule) if r["status"] == "ok" else math.inf for r in rows]
    return sum(scores) / len(scores) if scores and len(rows) == len(cells) else math.inf


def config_hash(raw: dict) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare(config: str | Path | dict, out_dir: str | Path, *, smoke: bool = False
            ) -> tuple[dict, dict, dict[int, dict]]:
    """(tune section, validated experiment as a plain dict, {tuned method index: space}); checks everything first.

    ``smoke`` shrinks the experiment as ``run --smoke`` does and caps the study at 3 trials.
    """
    spec, raw = split_tune(load_raw(config) if isinstance(config, (str, Path)) else config)
    if smoke:
        raw = smoke_raw(raw)
    cfg = parse_config(raw)
    spaces = check_spec(spec, cfg)
    if smoke:
        spec["trials"] = min(spec.get("trials", SMOKE_TRIALS), SMOKE_TRIALS)
    raw = cfg.model_dump(exclude_none=True)
    if not cfg.cache_dir:
        raw["cache_dir"] = str(Path(out_dir) / ".forgetkit-cache")
    return spec, raw, spaces


def tune(config: str | Path | dict, out_dir: str | Path, *, n_trials: int | None = None, smoke: bool = False,
         show_progress: bool = False, only: list[str] | None = None) -> Path:
    """Run (or resume) every study and write the recipes; returns tune_report.md.

    One ``method``: its best settings are also run on the reported requests (``final/``).
    ``only``: tune just these labels of a ``methods`` section, in this order (to split the work
    between processes, cheap studies first).
    """
    import optuna

    from .runner import run_experiment

    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise ValueError(f"--trials must be a positive number of trials, got {n_trials!r}")
    spec, raw, spaces = prepare(config, out_dir, smoke=smoke)
    cfg = parse_config(raw)
    labels = [m.display for m in cfg.methods]
    if only:
        unknown = [w for w in only if w not in [labels[mi] for mi in spaces]]
        if unknown:
            raise ValueError(f"--methods: {unknown} are not tuned by this config; tuned: "
                             f"{[labels[mi] for mi in spaces]}")
        spaces = {labels.index(w): spaces[labels.index(w)] for w in dict.fromkeys(only)}  # in the order given
    n_trials = spec.get("trials", 20) if n_trials is None else n_trials
    rule = spec.get("rule", "avg_gap_on_validation")
    out_dir = Path(out_dir)
    trials_dir = out_dir / "trials"
    recipes_dir = out_dir / "recipes" if smoke or not spec.get("recipes") else Path(spec["recipes"])
    check_sqlite_file(out_dir / STUDY_FILE, OPTUNA_TABLES, "tuning store (Optuna studies)", empty_ok=True)
    check_store_file(trials_dir / "results.sqlite")
    check_dir(recipes_dir, "tune.recipes")  # before the trials, not after them
    out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    outcomes = []
    for mi, space in spaces.items():
        study = optuna.create_study(study_name=f"{cfg.name}/{labels[mi]}", direction="minimize",
                                    storage=f"sqlite:///{out_dir / STUDY_FILE}", load_if_exists=True)
        _fail_stale(study)

        def objective(trial, mi=mi, space=space) -> float:
            params = {name: _suggest(trial, name, dim) for name, dim in space.items()}
            trial_cfg = validation_config(raw, mi, params, spec.get("seeds"), rule)
            run_experiment(trial_cfg, trials_dir, show_progress=show_progress, report=False)
            return trial_score(trial_cfg, trials_dir, rule)

        optimize(study, objective, n_trials)
        best = best_trial(study)
        recipe = save_recipe(recipes_dir, cfg.methods[mi].model_dump(exclude_none=True), best.params,
                             {"config": cfg.name, "config_hash": config_hash(raw), "rule": rule, "smoke": smoke,
                              "trials": len(_complete(study)), "best_value": best.value, "space": space,
                              "seeds": spec.get("seeds") or cfg.seeds,
                              "validation_requests": [  # the trial's copies say role: report; these never are
                                  {k: v for k, v in r.items() if k != "role"} for r in validation_config(
                                      raw, mi, {}, rule=rule).model_dump(exclude_none=True)["requests"]]})
        outcomes.append((labels[mi], study, space, recipe))
    final_report = None
    if "method" in spec:
        final_raw = with_options(raw, next(iter(spaces)), best_trial(outcomes[0][1]).params)
        final_report = run_experiment(parse_config(final_raw), out_dir / "final", show_progress=show_progress).report
    return write_tune_report(out_dir, outcomes, rule, final_report, smoke)


def latest_recipe(recipes_dir: Path, label: str) -> Path | None:
    """The highest ``<label>-v<N>.yaml`` :func:`save_recipe` wrote there (its versions count up from 1)."""
    version = 0
    while (recipes_dir / f"{label}-v{version + 1}.yaml").exists():
        version += 1
    return recipes_dir / f"{label}-v{version}.yaml" if version else None


def with_tuned_rows(raw: dict) -> dict:
    """A config with a ``tune:`` section, without it, plus a ``<label>-tuned`` entry beside every method
    that has a recipe in ``tune.recipes`` (its latest version): the leaderboard's tuned rows next to
    the reference-default ones. The section of a single ``method`` only drops out."""
    from .grid import paper_name

    raw = copy.deepcopy(raw)
    spec = raw.pop("tune", None) or {}
    if not spec.get("recipes"):
        return raw
    tuned = []
    for m in raw.get("methods", []):
        label = m.get("label") or m["name"]
        recipe = latest_recipe(Path(spec["recipes"]), label)
        if recipe is not None:
            shown = m.get("label") or paper_name(m["name"])
            tuned.append(apply_recipe({"methods": [{**copy.deepcopy(m), "label": label}]}, recipe)["methods"][0]
                         | {"label": shown + TUNED_SUFFIX})
    raw["methods"] = raw.get("methods", []) + tuned
    return raw


def _complete(study) -> list:
    """The completed trials in the order they were asked for."""
    import optuna

    return sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.number)


def sampler_for(completed: int):
    """TPE seeded by how many trials the study has completed. The k-th completed trial then draws the
    same values whether the study ran straight through or was stopped and resumed any number of
    times: TPE reads only completed trials, and an interrupted trial (stored failed) is drawn again,
    with the same values, as the next one."""
    import optuna

    return optuna.samplers.TPESampler(seed=SAMPLER_SEED + completed)


def optimize(study, objective, n_trials: int) -> None:
    """Run trials until the study has ``n_trials`` completed ones. A trial that raises (Ctrl-C
    included) is stored failed and the exception goes on, without Optuna's logged traceback."""
    import optuna

    while len(_complete(study)) < n_trials:
        study.sampler = sampler_for(len(_complete(study)))
        trial = study.ask()
        try:
            value = objective(trial)
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, value)


def best_trial(study):
    """The completed trial with the lowest value; among equal values the one asked for first (a
    rule that does not depend on where the study was interrupted, as trial numbers do)."""
    trials = _complete(study)
    if not trials:
        raise ValueError(f"study {study.study_name!r} has no completed trial")
    return min(trials, key=lambda t: t.value)


def _fail_stale(study) -> None:
    """Trials left RUNNING by a killed tuner will never finish: mark them failed so they are redone."""
    import optuna

    for t in study.trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def method_defaults(name: str) -> dict:
    """The defaults of every option of method ``name`` in this code, as plain YAML values.

    A recipe pins only the options it searched; the others take the code's defaults. A recipe
    records these, so that applying it once a default has changed is refused (the search chose
    its values beside the old ones) instead of silently running another method.
    """
    from ..methods import METHODS

    out = {}
    for f in dataclasses.fields(METHODS.get(name)):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = json.loads(json.dumps(value, default=str))
    return out


def changed_defaults(recipe: dict) -> dict[str, tuple]:
    """{option: (default when tuned, default now)} for the options the recipe does not pin; empty
    for recipes written before defaults were recorded."""
    then = (recipe.get("tuned") or {}).get("method_defaults")
    if then is None:
        return {}
    now = method_defaults(recipe["method"])
    return {k: (then.get(k), now.get(k)) for k in sorted(set(then) | set(now))
            if k not in recipe["options"] and then.get(k) != now.get(k)}


def save_recipe(recipes_dir: Path, method: dict, params: dict, provenance: dict) -> Path:
    """Write ``<label>-v<N>.yaml``; an identical recipe is reused, a different one gets the next version."""
    recipes_dir.mkdir(parents=True, exist_ok=True)
    label = method.get("label") or method["name"]
    body = {"method": method["name"], "label": label,
            "options": {**method.get("options", {}), **params},
            "tuned": {**provenance, "method_defaults": method_defaults(method["name"])}}
    version = 1
    while (path := recipes_dir / f"{label}-v{version}.yaml").exists():
        if yaml.safe_load(path.read_text()) == {**body, "version": version}:
            return path
        version += 1
    return atomic_write(path, yaml.safe_dump({"version": version, **body}, sort_keys=False))


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
    changed = changed_defaults(recipe)
    if changed:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"recipe {recipe_path} was tuned when {recipe['method']}'s defaults were different "
                         f"({what}); its trials chose their values beside the old ones. Re-tune "
                         f"(`forgetkit tune CONFIG --methods {recipe['label']}` writes the next version), or pin "
                         "the old values in the recipe's options")
    for m in matches:
        m["options"] = {**m.get("options", {}), **recipe["options"]}
        smoke_tuned = bool((recipe.get("tuned") or {}).get("smoke"))
        m["recipe"] = f"{Path(recipe_path).name}" + (" (smoke-tuned: not a result)" if smoke_tuned else "")
    return raw


def write_tune_report(out_dir: Path, outcomes: list, rule: str, final_report: Path | None,
                      smoke: bool = False) -> Path:
    """tune_report.md: the rule, and per tuned method its search space, every trial and the choice."""
    lines = ["# Tuning" + (" (smoke run)" if smoke else ""), ""]
    if smoke:
        lines += ["> **Smoke run**: data, epochs and trials were shrunk by `--smoke`; the recipes below are "
                  "marked smoke-tuned and are not a tuning result.", ""]
    lines += [f"- Selection rule: `{rule}` — {RULES[rule]}; the reported requests are never used to select.",
              f"- Sampler: Optuna TPE, seeded {SAMPLER_SEED} + the number of trials completed before each "
              "(a study stopped and resumed draws what an uninterrupted one does); trials numbered in the order "
              f"they completed; studies in `{STUDY_FILE}`.", ""]
    if final_report is not None:
        lines += [f"- Report of the chosen settings on the reported requests: "
                  f"`{final_report.relative_to(out_dir)}`", ""]
    for label, study, space, recipe in outcomes:
        trials = _complete(study)
        best = best_trial(study)
        names = list(space)
        lines += [f"## {label}", "",
                  f"- Search space: `{json.dumps(space)}`",
                  f"- Trials: {len(trials)} completed",
                  f"- Chosen: `{json.dumps(best.params)}` (trial {trials.index(best)}, value {best.value:.4g})",
                  f"- Recipe: `{recipe}`",
                  "", "| trial | " + " | ".join(names) + " | value |", "|---" * (len(names) + 2) + "|"]
        for i, t in enumerate(trials):
            cells = [f"{t.params[n]:.4g}" if isinstance(t.params[n], float) else str(t.params[n]) for n in names]
            lines.append(f"| {i} | " + " | ".join(cells) + f" | {t.value:.4g} |")
        lines.append("")
    return atomic_write(out_dir / "tune_report.md", "\n".join(lines) + "\n")
