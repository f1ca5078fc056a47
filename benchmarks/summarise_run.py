"""Compact Markdown tables of chosen metrics from a run's result store (used for the docs' tables).

``python benchmarks/summarise_run.py RUN_DIR KEY [KEY ...]``            mean ± 95 % CI per label over every row
``python benchmarks/summarise_run.py RUN_DIR KEY ... --per-request``    one column block per request (means)

Labels follow the report (``method`` or ``method + weighting``); string-valued keys (e.g. the
MIA-NN class pair) are listed as their distinct values.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from forgetkit.bench.report import _label, _order, format_values, load_run


def main(argv: list[str]) -> None:
    per_request = "--per-request" in argv
    args = [a for a in argv if a != "--per-request"]
    run_dir, keys = Path(args[0]), args[1:]
    rows = load_run(run_dir)[1]
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_label[_label(r)].append(r)
    if per_request:
        requests = sorted({r["request"] for r in rows})
        head = [f"{q} {k}" for q in requests for k in keys]
        print("| Method | " + " | ".join(head) + " |\n|---|" + "---|" * len(head))
        for label in sorted(by_label, key=_order):
            vals = [format_values([r["metrics"].get(k) for r in by_label[label] if r["request"] == q], 1) for q in requests for k in keys]
            print(f"| {label} | " + " | ".join(vals) + " |")
        return
    print("| Method | n | " + " | ".join(keys) + " |\n|---|---|" + "---|" * len(keys))
    for label in sorted(by_label, key=_order):
        rs = by_label[label]
        print(f"| {label} | {len(rs)} | " + " | ".join(format_values([r["metrics"].get(k) for r in rs], 1) for k in keys) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
