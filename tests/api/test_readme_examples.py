"""Every ```python block of README.md runs, in order, in one namespace: the example cannot go stale.
(The longer examples live in the documentation site; tests/project/test_docs.py runs those.)"""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_readme_has_a_python_example():
    blocks = python_blocks()
    assert blocks and any("forgetkit.unlearn(" in b for b in blocks)


def test_readme_examples_run(clean_registries, capsys):
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # noqa: S102  our own docs
        except Exception as e:  # noqa: BLE001  name the block that broke
            raise AssertionError(f"README python block {i} failed: {type(e).__name__}: {e}\n{block}") from e
    out = capsys.readouterr().out
    # the claims the prose makes about the output: original beside unlearned, forget accuracy falls
    result = namespace["result"]
    assert list(result.table.rows) == ["original", "unlearned"] and "unlearned" in out
    assert result.metrics["FA"] < result.original_metrics["FA"] - 50
    assert result.metrics["TA"] > result.original_metrics["TA"] - 5
