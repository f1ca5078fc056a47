"""A preset's ``paper:`` block: the published numbers of the table it reproduces, shown beside ours.

A preset under ``configs/papers/`` names its table and lists the paper's rows. The block is split
off before the config is validated (it describes the paper, not the run), saved as ``paper.json``
beside the run's store, and rendered into the report as one table per forget request, each
metric as "paper / ours" so the reader sees at once how far the reproduction lands.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from ..files import atomic_write
from .config import StrictModel, validate_schema

PAPER_FILE = "paper.json"


class PaperRow(StrictModel):
    request: str
    """the forget request's ``name`` in the preset"""
    method: str
    """the row's name as the paper prints it"""
    ours: str | None = None
    """our row's label when it differs from the paper's (default: ``method``)"""
    values: list[float | None]
    """one per ``metrics`` entry, in that order (null: not reported)"""


class PaperNumbers(StrictModel):
    table: str
    """the paper and table reproduced, e.g. "FaLW (Yu et al., ICLR 2026), Table 2\""""
    setting: str
    """data, model, forget set as the paper states them"""
    note: str | None = None
    """what differs from the paper or is inferred, printed under the table"""
    metrics: list[str] = Field(min_length=1)
    """our metric keys, in the paper's column order (FA, RA, TA, MIA, AvgGap, MIA_NN, ...)"""
    rows: list[PaperRow] = Field(min_length=1)

    @model_validator(mode="after")
    def _aligned(self):
        for i, row in enumerate(self.rows):
            if len(row.values) != len(self.metrics):
                raise ValueError(f"rows.{i} ({row.method}, {row.request}) has {len(row.values)} values "
                                 f"but metrics lists {len(self.metrics)}")
        return self


def split_paper(raw: dict) -> tuple[PaperNumbers | None, dict]:
    """(the validated ``paper:`` block or None, the config without it)."""
    if "paper" not in raw:
        return None, raw
    rest = {k: v for k, v in raw.items() if k != "paper"}
    try:
        return validate_schema(PaperNumbers, raw["paper"]), rest
    except ValueError as e:
        raise ValueError(f"paper: {e}") from None


def save_paper(out_dir: Path, paper: PaperNumbers | None) -> None:
    if paper is not None:
        atomic_write(Path(out_dir) / PAPER_FILE, paper.model_dump_json(indent=1))


def _ours(rows: list[dict], metric: str) -> str:
    values = [r["metrics"].get(metric) for r in rows]
    values = [v for v in values if isinstance(v, (int, float)) and np.isfinite(v)]
    return f"{np.mean(values):.2f}" if values else "–"


def paper_lines(out_dir: Path, grouped: dict[str, dict[str, list[dict]]]) -> list[str]:
    """The report's section for a run with a ``paper.json``; nothing for any other run.

    ``grouped``: request → row label → rows (one per seed), as the report groups them.
    """
    path = Path(out_dir) / PAPER_FILE
    if not path.is_file():
        return []
    paper = PaperNumbers.model_validate(json.loads(path.read_text()))
    lines = [f"## Beside the paper: {paper.table}", "", f"Paper's setting: {paper.setting}. Each cell: "
             "the paper's number / ours (mean over seeds; – where a row or request did not run).", ""]
    requests = list(dict.fromkeys(r.request for r in paper.rows))
    for request in requests:
        ours = grouped.get(request, {})
        lines += [f"**{request}**", "", "| Method | " + " | ".join(f"{m} (paper / ours)" for m in paper.metrics) + " |",
                  "|---|" + "---|" * len(paper.metrics)]
        for row in (r for r in paper.rows if r.request == request):
            mine = ours.get(row.ours or row.method, [])
            cells = [f"{'–' if v is None else f'{v:.2f}'} / {_ours(mine, m)}" for v, m in zip(row.values, paper.metrics)]
            name = row.method if not row.ours or row.ours == row.method else f"{row.method} (ours: {row.ours})"
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if paper.note:
        lines += [f"Note: {paper.note}", ""]
    return lines
