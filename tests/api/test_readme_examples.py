"""Every ```python block of README.md runs, in order, in one namespace: the examples cannot go stale."""
import re
from pathlib import Path

import pytest


README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_readme_has_python_examples():
    blocks = python_blocks()
    assert len(blocks) >= 5 and any("forgetkit.evaluate(" in b for b in blocks)


def test_readme_examples_run(clean_registries, capsys):
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # noqa: S102  our own docs
        except Exception as e:  # noqa: BLE001  name the block that broke
            raise AssertionError(f"README python block {i} failed: {type(e).__name__}: {e}\n{block}") from e
    out = capsys.readouterr().out
    # the claims the prose makes about the outputs
    rl = namespace["rl"]
    assert list(rl.table.rows) == ["original", "unlearned", "reference"]
    assert rl.metrics["FA"] < rl.original_metrics["FA"] and rl.metrics["AvgGap"] < rl.original_metrics["AvgGap"]
    assert namespace["steps"][-1][0] == namespace["steps"][-1][1]
    assert "Acc_f" in namespace["df"].columns and namespace["report"].verdict in out
    assert "['contract', 'needs_enforced', 'efficacy']" in out
