"""The retrain-free deletion audit: does the forget set look like unseen data of its class?

FaLW's idea as evidence (FaLW, ICLR 2026, §4.1: a faithfully forgotten sample's confidence should
be indistinguishable from that of same-class data the model never saw). For every class of the
forget set, and overall, the verdict (:mod:`.decision`) compares the unlearned model's confidence
on forget samples with its own confidence on held-out samples of the same class; the original's
view of them is context. No retrained model is needed.

Modules: :mod:`.types` (results), :mod:`.scores` (per-sample scores and their stored form),
:mod:`.inputs` (input checks), :mod:`.decision` (the verdict), :mod:`.statistics` (the AUC
evidence of one model), :mod:`.rules` (the AUC comparisons' rules), :mod:`.meter` (:func:`audit`, :func:`audit_scores`), :mod:`.report` (Markdown/HTML/JSON)
and :mod:`.runs` (a finished run's rows from its store's audit data).

``forgetkit.audit(...)`` calls :func:`audit`: the package is callable, so the public name stays
the function it always was while the package holds the parts.
"""
from __future__ import annotations

import sys
import types as _types

from .meter import audit, audit_scores
from .report import render, write_audit_report
from .scores import SCORE_KEYS, decode_scores, encode_scores
from .types import AuditResult, Evidence, Membership, Side

__all__ = ["audit", "audit_scores", "render", "write_audit_report", "SCORE_KEYS", "decode_scores",
           "encode_scores", "AuditResult", "Evidence", "Membership", "Side"]


class _CallablePackage(_types.ModuleType):
    def __call__(self, *args, **kwargs) -> AuditResult:
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
