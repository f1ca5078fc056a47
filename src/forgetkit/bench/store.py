"""The result store: one SQLite row per finished (or failed) grid cell, written in a transaction.

A row's ``key`` is a hash of everything that defines the cell, so re-running a sweep skips rows
that are already there and a crash never leaves half a row.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    method TEXT NOT NULL,
    weighting TEXT NOT NULL,
    request TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    metrics TEXT NOT NULL,
    params TEXT NOT NULL,
    error TEXT,
    provenance TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS artifacts (
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, name)
);
"""

COLUMNS = ("key", "experiment", "method", "weighting", "request", "seed", "status", "metrics",
           "params", "error", "provenance", "created")


class ResultStore:
    """SQLite results; safe against crashes (WAL + one transaction per row)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self):
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def has(self, key: str) -> bool:
        """True if the cell finished (ok); failed cells are retried on the next run."""
        row = self._db.execute("SELECT status FROM results WHERE key=?", (key,)).fetchone()
        return row is not None and row[0] == "ok"

    def put(self, *, key: str, experiment: str, method: str, weighting: str, request: str,
            seed: int, status: str, metrics: dict, params: dict, provenance: dict,
            error: str | None = None, artifacts: dict[str, object] | None = None) -> None:
        """Insert or replace one row and its artifacts atomically."""
        with self._db:
            self._db.execute(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                (key, experiment, method, weighting, request, int(seed), status,
                 json.dumps(metrics), json.dumps(params, default=str), error,
                 json.dumps(provenance, default=str), time.time()))
            self._db.execute("DELETE FROM artifacts WHERE key=?", (key,))
            for name, value in (artifacts or {}).items():
                self._db.execute("INSERT INTO artifacts VALUES (?, ?, ?)", (key, name, json.dumps(value)))

    def rows(self, experiment: str | None = None, status: str | None = None) -> list[dict]:
        """All rows as dicts with ``metrics``/``params``/``provenance`` decoded."""
        sql, args = "SELECT * FROM results WHERE 1=1", []
        if experiment is not None:
            sql += " AND experiment=?"
            args.append(experiment)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        cur = self._db.execute(sql + " ORDER BY created", args)
        names = [d[0] for d in cur.description]
        out = []
        for r in cur.fetchall():
            row = dict(zip(names, r))
            for field in ("metrics", "params", "provenance"):
                row[field] = json.loads(row[field])
            out.append(row)
        return out

    def artifacts(self, key: str) -> dict[str, object]:
        cur = self._db.execute("SELECT name, value FROM artifacts WHERE key=?", (key,))
        return {name: json.loads(value) for name, value in cur.fetchall()}
