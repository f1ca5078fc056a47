"""The deletion audit report for a person: audit.md, a self-contained audit.html, and audit.json.

Everything is rendered in memory first and then each file is written atomically, so a failure
leaves nothing half-written.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .decision import DAMAGE_POINTS as DECISION_DAMAGE
from .types import AuditResult, Evidence, jsonable

DAMAGE_POINTS = 5.0
"""a held-out accuracy drop (points, before → after) that the report warns about"""

VERDICT_WORDS = {
    "under-forgotten": "the deleted samples still look more familiar to the model than unseen ones: traces remain",
    "faithful": "the deleted samples look like unseen samples of their class, within the margin",
    "over-forgotten": "the deleted samples look less familiar than unseen ones: the removal overshot, "
                      "which is itself a trace an attacker can notice",
    "inconclusive": "the data cannot tell: no clear difference, but not enough evidence of none either",
    "too few samples": "too few deleted or unseen samples of this class to decide: no verdict",
    "mixed": "some classes still look more familiar than unseen data, others less: see the classes below",
    "moved both ways": "the model moved both ways: some deleted samples still look more familiar than unseen "
                       "ones and others less (or it lost accuracy on unseen data as well): see the classes below",
}

DECISION_EXPLAINED = """**How the verdict was decided.** The model's confidence on the deleted samples is compared with its
own confidence on unseen samples of the same classes: a model retrained without the deleted
samples never saw either group, so to it they look alike, whatever its seed, epochs or recipe.
Three tests look for a difference: the **rank** test (a shift of the bulk), the **correctness**
test (an accuracy gap) and the **tail** test (the share of samples in the least confident
{tail:.0%} of their class: the hard samples a model memorises). The false-alarm rate over all of
them, overall and per class, is at most {alpha:.0%} (Holm). The direction of a flag is the sign of
the difference in mean probability of the true class (deleted − unseen). "Faithful" needs both
intervals inside the margins (± {pm} in probability, ± {am:g} accuracy points). With the original
model, a model that lost more than {dp:g} points of accuracy on unseen data is over-forgotten even
where deleted and unseen samples look alike to it (decided by "damage")."""

DECISION_HEADER = ["scope", "deleted", "unseen", "Δ mean p(true class)", "Δ accuracy (points)",
                   "p rank / correctness / tail (adjusted)", "decided by", "verdict"]

TARGET_WORDS = {
    "under-forgotten": "the model is still surer of the deleted samples than the original model was of unseen "
                       "samples of their class (a model retrained without them would be about that sure): traces remain",
    "faithful": "the model is about as sure of the deleted samples as the original was of unseen samples of their "
                "class, within the margins: where a retrained model would be",
    "over-forgotten": "the model is much less sure of the deleted samples than the original was of unseen ones: the "
                      "removal overshot, which is itself a trace an attacker can notice",
    "inconclusive": "the data cannot tell: no clear difference, but not enough evidence of none either",
    "too few samples": "too few deleted or unseen samples of this class to decide: no verdict",
    "mixed": "the model keeps traces of some classes and overshot on others: see the classes below",
}

TARGET_TITLE = "Context: the deleted samples now against unseen samples under the original"

TARGET_EXPLAINED = """\
**A comparison with the original model** (context: it does not decide the verdict, since a model
retrained with another recipe can be surer or less sure of everything than the original): the deleted samples under the model now,
against unseen samples under the *original* model. A model retrained without the deleted samples
would be about as sure of them as the original is of data it never saw, so this asks whether the
model's confidence on the deleted samples has come down to that level — no further, no less. A
model retrained on less data is less sure of unseen data than the original: {shift} The band is
wider below: under-forgotten above {upper}, over-forgotten below {lower} (AUC), faithful
when the whole interval lies within.{bracket} It cannot know how a retrained model would behave when a
request takes away most of a class (or a whole class that others resemble): there even a
retrained model moves away from the original. A class that lost more than half its training
samples is therefore never called over-forgotten here (a model retrained on the rest would be
less sure of it too); the verdict on neighbours of a removed class is the least reliable."""

BRACKET_EXPLAINED = """ How much less sure depends on how steep the learning curve is, which
is not known without retraining, so the reference is a range, from the original's confidence on
unseen data (unmoved) down to the moved one: under-forgotten needs the AUC against the unmoved
end above the band, over-forgotten the AUC against the moved end below it, faithful both
intervals inside it."""


def shift_sentence(settings: dict, names: dict[int, str]) -> str:
    """What the target comparison did about a retrained model's lower confidence, in words."""
    shift, k = settings.get("reference_shift"), settings.get("retrain_slope")
    if shift is None:
        return ("its unseen samples' confidence under the original is compared as it is (the retain counts were "
                "not given, so the retained share of each class is unknown).")
    if not k or not shift:
        return "the reference is not moved for it here (correction off)."
    moved = ", ".join(f"{_class_label(int(c), names)} {d:+.2f}" for c, d in shift.items())
    return (f"the unseen samples' log-odds under the original are also moved to where a model retrained on a "
            f"small pool put them, {k:g} × log(share of the class's training samples kept): {moved}.")

CAN_AND_CANNOT = """\
**What this evidence can show.** Whether, to the model as it is now, the deleted samples look like
samples of the same class that the model never saw: in how sure it is of them (rank), how often it
is right (correctness) and how many of them it finds hard (tail). A model that still remembers its
training data is usually surer of it and right more often than on new data. A flag is raised only
when a difference is statistically clear after allowing for every test and class (overall
false-alarm rate {alpha:.0%}). "Faithful" needs positive evidence: both {level:.0%} intervals
inside the margins. The AUC tables further down are context: the chance that a deleted sample looks
more familiar than an unseen one (0.5: no difference). A class removed whole is judged
differently: a model retrained without it would never predict it, so the audit checks how often
the model still predicts it on the deleted and unseen samples of that class (flagged when clearly
above {tolerance:.0%}; faithful when at most {tolerance:.0%} with {level:.0%} confidence).

The membership test asks, sample by sample, whether the model's confidence resembles the
confidence the original model had on its training data more than the confidence the model now has
on unseen data (a likelihood ratio, the idea of the LiRA attack, here without extra models).
"Caught at 1 % false alarms" is the share of deleted samples an attacker could single out while
wrongly accusing only 1 % of unseen samples; by pure chance it is about 1 %.

**What it cannot show.** It is not a proof that the data's influence is gone. It compares groups,
not single samples, and it sees only the model's confidence in the right answer; an attacker with
more (many shadow models, other outputs, the weights) may still find traces. "Faithful" means no
difference larger than the margin was detectable with these sample sizes, not that there is none.
It relies on the unseen (held-out) samples never having been trained on and being drawn like the
deleted ones: if the deleted samples are unusual (for example one person's photos), a difference
can reflect that, not memory. It does not compare with a model retrained without the data, the
gold standard this audit avoids.
"""


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _p(x) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.2g}" if x >= 1e-4 else "<1e-4"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _class_label(c: int, names: dict[int, str]) -> str:
    name = names.get(c, "")
    return str(c) if name in ("", str(c)) else f"{c} {name}"


def _evidence_rows(ev: list[Evidence], before: dict[str, Evidence], names: dict[int, str]) -> list[list[str]]:
    rows = []
    for e in ev:
        b = before.get(e.scope)
        label = e.scope if e.cls is None else _class_label(e.cls, names) + (" (removed whole)" if e.removed else "")
        rows.append([label, str(e.n_forget), str(e.n_heldout), _f(e.auc), f"[{_f(e.ci_low)}, {_f(e.ci_high)}]",
                     _p(e.p_adjusted), f"{_f(e.acc_forget, 1)} / {_f(e.acc_heldout, 1)}",
                     _f(b.auc) if b else "–", f"**{e.verdict}**"])
    return rows


EVIDENCE_HEADER = ["class", "deleted", "unseen", "AUC", "95 % interval", "p (adjusted)",
                   "accuracy deleted / unseen (%)", "AUC before", "verdict"]


def _md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c).replace('**', '')}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _shown_classes(result: AuditResult, most: int = 4) -> list[int]:
    """The classes behind the verdict first (those a test decided), then those whose mean
    true-class probability moved most."""
    audited = {e.cls for e in result.per_class}
    ds = [d for d in result.class_decisions if d.cls in audited]
    if not ds:
        return [e.cls for e in result.per_class][:most]
    def shift(d) -> float:
        mean = d.prob_diff[0] if d.prob_diff else None
        return 0.0 if mean is None or mean != mean else abs(mean)

    moved = sorted(ds, key=lambda d: (d.decided_by is None, -shift(d)))
    return [d.cls for d in moved[:most]]


def histogram_png(result: AuditResult, names: dict[int, str] | None = None) -> bytes:
    """Histograms of the score, deleted vs unseen samples (and deleted before, if known): all
    classes, then the classes that decided the verdict (or moved most), at most four, so the
    figure shows the comparison behind the verdict and stays cheap on a grid of rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = names or {}
    s = result.scores["after"]
    sb = result.scores.get("before")
    classes = _shown_classes(result)
    panels = len(classes) + 1
    cols = min(5, panels)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.3 * rows), squeeze=False)
    lo, hi = np.percentile(np.concatenate([s["forget"], s["heldout"]]), [0.5, 99.5])
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
    aucs = {e.cls: e.auc for e in result.per_class}
    for k, ax in enumerate(axes.flat):
        if k >= panels:
            ax.axis("off")
            continue
        if k == 0:
            f, h, title = slice(None), slice(None), f"all classes (AUC {result.overall.auc:.2f})"
        else:
            c = classes[k - 1]
            f, h = s["forget_y"] == c, s["heldout_y"] == c
            title = f"{_class_label(c, names)} (AUC {aucs[c]:.2f})"
        def density(v):
            counts, _ = np.histogram(np.clip(v, bins[0], bins[-1]), bins)
            return counts / max(1, counts.sum()) / np.diff(bins)

        # stairs: one artist per curve (hist draws one patch per bar, 10× slower to render)
        ax.stairs(density(s["heldout"][h]), bins, fill=True, alpha=0.5, label="unseen", color="tab:blue")
        ax.stairs(density(s["forget"][f]), bins, fill=True, alpha=0.5, label="deleted", color="tab:red")
        if sb is not None:
            ax.stairs(density(sb["forget"][f]), bins, color="black", label="deleted, before")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6)
        if k == 0:
            ax.legend(fontsize=6)
    fig.supxlabel("confidence in the true class (log-odds); right = more familiar", fontsize=8)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.12 / rows, top=1 - 0.1 / rows, wspace=0.25, hspace=0.45)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _interval(t, digits: int) -> str:
    return "–" if t is None or t[0] is None or t[0] != t[0] else \
        f"{t[0]:+.{digits}f} [{t[1]:+.{digits}f}, {t[2]:+.{digits}f}]"


def _decision_rows(result: AuditResult, names: dict[int, str]) -> list[list[str]]:
    rows = []
    for d in [result.decision] + result.class_decisions:
        label = d.scope if d.cls is None else _class_label(d.cls, names)
        ps = " / ".join(_p(d.p_adjusted.get(t)) if d.p_adjusted.get(t) is not None else "–"
                        for t in ("rank", "correctness", "tail"))
        rows.append([label, str(d.n_forget), str(d.n_heldout), _interval(d.prob_diff, 3), _interval(d.acc_diff, 1),
                     ps, d.decided_by or "–", f"**{d.verdict}**"])
    return rows


def decision_summary(result: AuditResult) -> str:
    """The verdict and the interval behind it, in one line (the CLI prints it)."""
    d = result.decision
    if d is None:
        o = (result.target or result.after).overall
        return f"{result.verdict} (AUC {o.auc:.3f} [{o.ci_low:.3f}, {o.ci_high:.3f}])"
    text = f"{result.verdict}: {d.deciding_interval()}"
    if d.verdict == "inconclusive" and d.heldout_needed:
        text += f"; about {d.heldout_needed} held-out samples (now {d.n_heldout}) would decide it"
    elif d.verdict == "inconclusive":
        text += "; more held-out data alone would not decide it (too few deleted samples, or a difference at the margin)"
    return text


def render(result: AuditResult, *, method: str | None = None, method_settings: dict | None = None,
           unlearn_seconds: float | None = None, class_names=None, title: str = "Deletion audit",
           no_unlearning: bool = False, figure: bool = True) -> dict[str, bytes]:
    """The three files' contents: {"audit.md", "audit.html", "audit.json"} → bytes.

    ``no_unlearning``: the model is the original itself (a run's Original row): the page says so and
    shows ``unlearn_seconds`` as its training time. ``figure=False`` leaves the histograms out
    (a smoke run's pages: the figure costs most of a page)."""
    names = dict(enumerate(class_names)) if class_names else {}
    st = result.settings
    before = {e.scope: e for e in ([result.before.overall] + result.before.per_class)} if result.before else {}
    rows = _evidence_rows([result.overall] + result.per_class, before, names)
    counts = result.counts()
    asked = ", ".join(f"{_class_label(c, names)}: {n}" for c, n in counts.items())
    split_words = {"forget": "deleted (forget set)", "heldout": "unseen (held-out)", "retain": "kept (retain set)",
                   "test": "test"}
    acc_rows = [[split_words[k], _f(v.get("before"), 1), _f(v.get("after"), 1)] for k, v in result.accuracy.items()]
    head = result.target or result.after
    words = TARGET_WORDS if result.target is not None and result.decision is None else VERDICT_WORDS
    per_class = result.class_decisions or head.per_class
    tally = {v: sum(e.verdict == v for e in per_class) for v in VERDICT_WORDS}
    per_class_line = "Per class: " + ", ".join(f"{n} {v}" for v, n in tally.items() if n) + "."
    mem = [("after", result.after.membership)] + ([("before", result.before.membership)] if result.before else [])
    mem_rows = [[side, m.reference, str(m.n_members), str(m.n_nonmembers), _f(m.auc), _pct(m.tpr_at_1pct_fpr),
                 _pct(m.tpr_at_0_1pct_fpr)] for side, m in mem]
    mem_header = ["model", "reference", "deleted", "unseen", "AUC", "caught at 1 % false alarms",
                  "caught at 0.1 % false alarms"]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    statement = CAN_AND_CANNOT.format(alpha=st["alpha"], margin=st["margin"], level=st["interval_level"],
                                      tolerance=st["tolerance"])
    verdict_line = f"**Verdict: {result.verdict}** — {words.get(result.verdict, VERDICT_WORDS[result.verdict])}. {per_class_line}"
    mem_note = ("A dash means too few unseen samples to measure that false-alarm rate "
                "(1 % needs at least 100, 0.1 % at least 1,000).")
    meta = [("what was asked", f"forget {sum(counts.values())} samples ({asked})"),
            ("method", "no unlearning: the original model, audited as it is" if no_unlearning else method or "not given"),
            ("method settings", json.dumps(method_settings, sort_keys=True) if method_settings else "not given"),
            ("training time (no unlearning)" if no_unlearning else "unlearning time",
             f"{unlearn_seconds:.1f} s" if unlearn_seconds is not None else "not given"),
            ("estimated gap to a retrained model", "not available (needs the original and retain data)"
             if result.estimated_gap is None else f"{result.estimated_gap:.2f} points (mean |FA − FA*|, |RA − RA*|, "
             "|TA − TA*|: a retrained model taken to be as accurate on the deleted samples as the model is on unseen ones, and "
             "as accurate on the retain and test data as the original; FaLW's Avg. Gap without its MIA term; a rough guide)"),
            ("audit time", f"{result.seconds:.1f} s"),
            ("audit settings", f"alpha {st['alpha']}, margin {st['margin']}, min samples {st['min_samples']}, "
                               f"{st['n_boot']} bootstrap resamples, seed {st['seed']}, score: {st['score']}"),
            ("written", when)]
    held_acc = _kept_heldout_accuracy(result)
    damage = ""
    if held_acc is not None and held_acc["after"] < held_acc["before"] - DAMAGE_POINTS:
        damage = (f"Warning: accuracy on unseen data of the classes kept in part fell from {held_acc['before']:.1f} % "
                  f"to {held_acc['after']:.1f} %. "
                  "The model lost accuracy on data it never saw too; comparing deleted with unseen samples "
                  "cannot see damage that hits both, so read the verdict together with the accuracies.")
        verdict_line += " " + damage
    target_md = target_html = ""
    if result.target is not None:
        t_rows = _evidence_rows([result.target.overall] + result.target.per_class, {}, names)
        t_rows = [r[:6] + [r[6], f"**{r[8].strip('*')}**"] for r in t_rows]
        t_header = ["class", "deleted", "unseen", "AUC vs original on unseen", "95 % interval", "p (adjusted)",
                    "accuracy deleted now / unseen under the original (%)", "verdict"]
        if result.target_unmoved is not None:  # both ends of the reference's range
            t_header[3:5] = ["AUC vs moved reference", "95 % interval", "AUC vs unmoved", "95 % interval"]
            ends = [result.target_unmoved.overall] + result.target_unmoved.per_class
            t_rows = [r[:5] + [_f(u.auc), f"[{_f(u.ci_low)}, {_f(u.ci_high)}]"] + r[5:] for r, u in zip(t_rows, ends)]
        explained = TARGET_EXPLAINED.format(upper=0.5 + st["target_margin"], lower=0.5 - st["target_margin_below"],
                                            shift=shift_sentence(st, names), bracket=BRACKET_EXPLAINED
                                            if result.target_unmoved is not None else "")
        target_md = (f"## {TARGET_TITLE}\n\n" + explained + "\n\n" + _md_table(t_header, t_rows))
        target_html = (f"<h2>{TARGET_TITLE}</h2>"
                       f"<p>{html.escape(explained).replace('**', '')}</p>{_html_table(t_header, t_rows)}")
    decision_md = decision_html = ""
    if result.decision is not None:
        explained = DECISION_EXPLAINED.format(tail=st["tail_quantile"], alpha=st["alpha"], pm=st["prob_margin"],
                                              am=st["acc_margin"], dp=DECISION_DAMAGE)
        line = f"Deciding comparison: {decision_summary(result)}."
        table = _decision_rows(result, names)
        decision_md = "## How the verdict was decided\n\n" + line + "\n\n" + explained + "\n\n" + _md_table(
            DECISION_HEADER, table)
        decision_html = (f"<h2>How the verdict was decided</h2><p>{html.escape(line)}</p>"
                         f"<p>{html.escape(explained).replace('**', '')}</p>{_html_table(DECISION_HEADER, table)}")
    missing = [s for s in ("retain", "test") if s not in result.accuracy]
    acc_note = f"\n\n({' and '.join(missing)} data not given.)" if missing else ""

    md = "\n\n".join([
        f"# {title}", verdict_line,
        _md_table(["", ""], [[k, v] for k, v in meta]),
        *([decision_md] if decision_md else []),
        "## Accuracy before and after\n\n" + _md_table(["split", "before (%)", "after (%)"], acc_rows) + acc_note,
        *([target_md] if target_md else []),
        "## Evidence: can this model tell deleted samples from unseen samples of their class?\n\n"
        + _md_table(EVIDENCE_HEADER, rows),
        "## Membership test\n\n" + _md_table(mem_header, mem_rows) + "\n\n" + mem_note,
        "Histograms of the deciding comparison: see audit.html." if figure
        else "Histograms left out (smoke run).",
        "## What this evidence can and cannot show\n\n" + statement]) + "\n"

    png = base64.b64encode(histogram_png(result, names)).decode() if figure and "after" in result.scores else None
    para = "".join(f"<p>{html.escape(p).replace('**', '')}</p>" for p in statement.split("\n\n"))
    figure = ("" if png is None else '<h2>The deciding comparison: deleted vs unseen under the model</h2>'
              '<img alt="histograms" '
              f'src="data:image/png;base64,{png}" style="max-width:100%">')
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:90%}}
.v{{font-size:120%;padding:.5em;background:#f3f3f3}}</style></head><body>
<h1>{html.escape(title)}</h1><p class="v"><b>{html.escape(verdict_line.split("** — ")[0].strip("*"))}</b> — {html.escape(verdict_line.split("** — ", 1)[1])}</p>
{_html_table(["", ""], [[k, v] for k, v in meta])}
{decision_html}{figure}
<h2>Accuracy before and after</h2>{_html_table(["split", "before (%)", "after (%)"], acc_rows)}{html.escape(acc_note)}
{target_html}
<h2>Evidence: can this model tell deleted samples from unseen samples of their class?</h2>{_html_table(EVIDENCE_HEADER, rows)}
<h2>Membership test</h2>{_html_table(mem_header, mem_rows)}<p>{html.escape(mem_note)}</p>
<h2>What this evidence can and cannot show</h2>{para}</body></html>
"""
    js = jsonable(result.to_dict() | {"method": method, "method_settings": method_settings, "warning": damage or None,
                                    "unlearn_seconds": unlearn_seconds, "written": when,
                                    "class_names": names or None})
    return {"audit.md": md.encode(), "audit.html": page.encode(),
            "audit.json": json.dumps(js, indent=2, allow_nan=False).encode()}


def _kept_heldout_accuracy(result: AuditResult) -> dict | None:
    """Held-out accuracy (%) before and after over the classes kept in part (a class removed whole
    should no longer be recognised, so its fall is no damage); None without them or without before."""
    if result.before is None:
        return None
    out = {}
    for side, ev in (("after", result.after.per_class), ("before", result.before.per_class)):
        kept = [e for e in ev if not e.removed and e.n_heldout]
        if not kept:
            return None
        out[side] = sum(e.acc_heldout * e.n_heldout for e in kept) / sum(e.n_heldout for e in kept)
    return out


def write_files(out_dir, files: dict[str, bytes]) -> dict[str, Path]:
    """Write rendered files into ``out_dir`` (created), each atomically."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"audit output {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in files.items():
        atomic_write(out / name, data)
        paths[name] = out / name
    return paths


def write_audit_report(result: AuditResult, out_dir, **options) -> dict[str, Path]:
    """Write audit.md, audit.html and audit.json into ``out_dir``; options as :func:`render`."""
    return write_files(out_dir, render(result, **options))
