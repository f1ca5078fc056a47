"""The result store: one SQLite row per finished (or failed) grid cell, written in a transaction.

A row's ``key`` is a hash of everything that defines the cell, so re-running a sweep skips rows
that are already there and a crash never leaves half a row.
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from contextlib import contextmanager
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
CREATE TABLE IF NOT EXISTS audits (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL
);
"""

COLUMNS = ("key", "experiment", "method", "weighting", "request", "seed", "status", "metrics",
           "params", "error", "provenance", "created")


class ResultStore:
    """SQLite results; safe against crashes (WAL + one transaction per row).

    ``create=False`` opens an existing store only (to read it: reports, merges): a missing file, an
    empty SQLite file or another program's database is then refused, and never given our tables.
    A file that is another program's database is refused either way.
    """

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if self.path.exists():
            check_store_file(self.path, create=create)
        elif not create:
            raise FileNotFoundError(f"no results store at {self.path}; run an experiment with --out "
                                    f"{self.path.parent} first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        try:
            with self._disk_full_as_oserror():
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            self._db.close()
            if isinstance(e, sqlite3.OperationalError):  # locked, cannot open: not a damaged file
                raise
            raise _not_a_store(self.path, str(e)) from None

    @contextmanager
    def _disk_full_as_oserror(self):
        """SQLite reports a full disk as ``OperationalError``; make it the ``OSError`` (ENOSPC) naming
        the store that every other writer raises, so one handler serves them all."""
        try:
            yield
        except sqlite3.OperationalError as e:
            if "full" in str(e):
                raise OSError(errno.ENOSPC, f"No space left on device ({e})", str(self.path)) from None
            raise

    def close(self):
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def has(self, key: str) -> bool:
        """True if the cell finished (ok); failed cells are retried on the next run."""
        return self.status(key) == "ok"

    def status(self, key: str) -> str | None:
        """The stored status of a cell (``ok`` or ``failed``), None if it has no row."""
        row = self._db.execute("SELECT status FROM results WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, *, key: str, experiment: str, method: str, weighting: str, request: str,
            seed: int, status: str, metrics: dict, params: dict, provenance: dict,
            error: str | None = None, artifacts: dict[str, object] | None = None) -> None:
        """Insert or replace one row and its artifacts atomically (a full disk leaves the store as it was)."""
        with self._disk_full_as_oserror(), self._db:
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
                row[field] = self._decode(row[field], f"the {field} of row {row['key']}")
            out.append(row)
        return out

    def _decode(self, text: str, what: str):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"{self.path}: {what} is damaged (not JSON: {e}); re-run the experiment into "
                             "another --out, or delete that row to have it computed again") from None

    def artifacts(self, key: str) -> dict[str, object]:
        cur = self._db.execute("SELECT name, value FROM artifacts WHERE key=?", (key,))
        return {name: self._decode(value, f"artifact {name!r} of row {key}") for name, value in cur.fetchall()}

    def put_audit(self, key: str, record: dict) -> None:
        """Add a re-audit's record of row ``key`` (the row itself is never rewritten)."""
        with self._disk_full_as_oserror(), self._db:
            self._db.execute("INSERT INTO audits VALUES (?, ?, ?)", (key, json.dumps(record), time.time()))

    def audits(self) -> dict[str, dict]:
        """Row key → its newest re-audit record (rows never re-audited are absent)."""
        cur = self._db.execute("SELECT key, value FROM audits ORDER BY created, rowid")
        return {key: json.loads(value) for key, value in cur.fetchall()}


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_store_file(path: Path, *, create: bool = True) -> None:
    """Refuse, reading only, a file at ``path`` that is not a results store (``create``: an empty
    SQLite file, which a new store may fill, passes); no file passes."""
    check_sqlite_file(path, RESULTS_TABLES, "results store", empty_ok=create)


def check_sqlite_file(path: Path, tables: dict[str, tuple], what: str, *, empty_ok: bool) -> None:
    """Refuse, reading only, a file at ``path`` that is not an SQLite database holding ``tables``
    (:func:`check_tables`); no file passes."""
    path = Path(path)
    if path.exists():
        _check_readable(path, what)
        check_tables(path, tables, what, empty_ok=empty_ok)


def _check_readable(path: Path, what: str = "results store") -> None:
    """Refuse a file that is not an SQLite database, reading its header only (never writing)."""
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise _not_a_store(path, "it does not start with the SQLite header", what)


RESULTS_TABLES = {"results": COLUMNS}
"""the tables (and the columns of each) that make a SQLite file a results store"""


def sqlite_tables(path: Path, what: str = "results store") -> dict[str, set[str]]:
    """Table → column names of the SQLite file at ``path``, read without writing anything beside it
    (``immutable``, so no journal files appear); a file a live writer holds (it has a ``-wal``
    beside it) is read through a normal read-only connection, which sees its latest tables."""
    from urllib.parse import quote

    live = Path(f"{path}-wal").exists()
    uri = f"file:{quote(str(Path(path).resolve()))}?{'mode=ro' if live else 'immutable=1'}"  # '?', '#', '%' in names
    try:
        db = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as e:
        raise _not_a_store(path, str(e), what) from None
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: {r[0] for r in db.execute("SELECT name FROM pragma_table_info(?)", (n,))} for n in names}
    except sqlite3.DatabaseError as e:
        if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
            raise
        raise _not_a_store(path, str(e), what) from None
    finally:
        db.close()


def check_tables(path: Path, expected: dict[str, tuple], what: str, *, empty_ok: bool) -> None:
    """Refuse a SQLite file that is not ours: one with tables but not ``expected`` (another
    program's database, or ours damaged), or, unless ``empty_ok``, one with no table at all."""
    tables = sqlite_tables(path, what)
    if not tables:
        if empty_ok:
            return
        raise ValueError(f"{path} is an empty SQLite file, not a {what} (it has no table); it was left "
                         "untouched. Give the directory of a forgetkit run, or remove the file")
    missing = sorted(set(expected) - set(tables))
    if missing:
        raise ValueError(f"{path} is not a forgetkit {what}: it holds the table(s) {sorted(tables)}, not "
                         f"{sorted(expected)}; it was left untouched. Give another --out, or move the file away")
    for table, columns in expected.items():
        lacking = [c for c in columns if c not in tables[table]]
        if lacking:
            raise ValueError(f"{path} is not a forgetkit {what}: its table {table!r} lacks the column(s) "
                             f"{lacking}; it was left untouched. Give another --out, or move the file away")


def _not_a_store(path: Path, why: str, what: str = "results store") -> ValueError:
    return ValueError(f"{path} is not a readable {what} ({why}); it was left untouched. To start a "
                      f"new store, give another --out, or move the file away (mv {path} {path}.broken) "
                      "and re-run")


def resolve_cache_dir(out_dir: str | Path, cache_dir: str | Path | None) -> Path:
    """The model cache of a run: the config's ``cache_dir``, else ``.forgetkit-cache`` beside the output."""
    return Path(cache_dir) if cache_dir else Path(out_dir).parent / ".forgetkit-cache"


def check_output_paths(out_dir: str | Path, cache_dir: str | Path | None) -> None:
    """Refuse, before anything is written, an output directory or model cache (``None``: the default
    beside the output) that is a file, lies under a file, or cannot be written."""
    check_dir(Path(out_dir), "--out")
    check_dir(resolve_cache_dir(out_dir, cache_dir), "cache_dir")


def check_dir(path: Path, what: str) -> None:
    """Refuse a directory that is a file, lies under a file, or cannot be written (``what`` names it)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a directory; give a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} {path} cannot be created: {existing} is a file; give another directory")
    if not os.access(existing, os.W_OK | os.X_OK) or not _can_create_in(existing):
        where = "" if existing == path else f" (its nearest existing parent {existing} is not writable)"
        raise ValueError(f"{what} {path} is read-only{where}; give a directory you can write to")


def _can_create_in(directory: Path) -> bool:
    """A real probe (``os.access`` says yes to root on a read-only mount): create and remove a file."""
    try:
        fd = os.open(directory / f".forgetkit-probe-{os.getpid()}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return True
    except OSError:
        return False
    os.close(fd)
    os.unlink(directory / f".forgetkit-probe-{os.getpid()}")
    return True


EXPERIMENT_FILE = "experiment.json"
EXPERIMENT_FIELDS = {"name": str, "config": dict, "planned_keys": list, "experiment_type": str, "keys": list}
"""the fields of a run's experiment.json that readers use, with their JSON types"""


def read_experiment(run_dir: str | Path, fields: tuple[str, ...] = ("name",)) -> dict:
    """A run's ``experiment.json``, with ``fields`` present; a file that is not JSON, not an object,
    or lacks a field (or holds one of the wrong type) is a ``ValueError`` naming the file and the field."""
    path = Path(run_dir) / EXPERIMENT_FILE
    rewrite = (f"forgetkit run writes it: restore it, or run the experiment again with --out {Path(run_dir)} "
               "(finished rows are kept)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); {rewrite}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not valid JSON (it is not UTF-8 text); {rewrite}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(meta).__name__}; {rewrite}")
    for name in fields:
        if name not in meta:
            raise ValueError(f"{path} lacks the field {name!r}; {rewrite}")
    for name, kind in EXPERIMENT_FIELDS.items():
        if name in meta and not isinstance(meta[name], kind) and not (name == "experiment_type" and meta[name] is None):
            raise ValueError(f"{path}: the field {name!r} must be a JSON {_JSON_NAMES[kind]}, got "
                             f"{type(meta[name]).__name__}; {rewrite}")
    return meta


_JSON_NAMES = {str: "string", dict: "object", list: "list"}
