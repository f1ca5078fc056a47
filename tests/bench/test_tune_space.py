"""Every registered method declares the search space of the leaderboard's equal tuning budget."""
from dataclasses import fields

import pytest

from forgetkit.methods import METHODS
from forgetkit.options import validate_options

STEP_NAMES = {"lr", "epochs", "n_iters", "impair_lr", "repair_lr", "repair_epochs"}
"""learning rates and step counts: every other entry counts as one of the method's own"""


@pytest.mark.parametrize("name", METHODS.names())
def test_tune_space_is_declared_and_valid(name):
    cls = METHODS.get(name)
    space = cls.tune_space
    assert space, f"{name} declares no tune_space"
    assert set(space) <= {f.name for f in fields(cls)}
    assert len(set(space) - STEP_NAMES) <= 2, f"{name}: at most two hyper-parameters of its own"
    for option, dim in space.items():
        if "choices" in dim:
            values = list(dim["choices"])
        else:
            assert dim["low"] < dim["high"], (option, dim)
            assert not dim.get("log") or dim["low"] > 0, (option, dim)
            values = [dim["low"], dim["high"]]
        for v in values:
            validate_options(cls, {option: v}, f"method {name!r}")
