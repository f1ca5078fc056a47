"""``forgetkit audit``: the retrain-free deletion audit of a checkpoint, or of every row of a run."""
from __future__ import annotations


def add_parser(sub) -> None:
    from .. import audit_cli

    audit_cli.add_parser(sub)
