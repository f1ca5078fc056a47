"""Command line: ``forgetkit run | tune | report | merge | methods | evaluate | audit``, one module per
subcommand; :mod:`.loading` reads the data and checkpoint files that ``evaluate`` and ``audit`` take."""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path

from . import audit, evaluate, merge, methods, report, run, tune

COMMANDS = (run, tune, report, merge, methods, evaluate, audit)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forgetkit", description="Machine unlearning benchmark and toolkit.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's time limit) or SIGHUP (the terminal closed): unwound like
    Ctrl-C, so stores close cleanly."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    """Run a command; every expected failure is one line ``forgetkit: error: ...`` (exit 2), a
    failed cell exits 1, Ctrl-C exits 130, SIGTERM 143 and SIGHUP 129 — never a traceback for these."""
    args = argparse.Namespace()
    try:
        with _signals_unwind():
            args = build_parser().parse_args(argv)
            return args.func(args)
    except KeyboardInterrupt as e:
        store = getattr(args, "store", None)
        kept = f"finished {getattr(args, 'kept', 'rows')} are kept in {store}" if store else \
            "nothing was left half-written"
        word, status = ("terminated", 128 + e.signum) if isinstance(e, Terminated) else ("interrupted", 130)
        print(f"forgetkit: {word}: {kept}; re-run the same command to resume", file=sys.stderr)
        return status
    except BrokenPipeError:  # `forgetkit methods | head`: the reader left; say nothing more
        _silence_stdout()
        return 141
    except (ValueError, KeyError, OSError, sqlite3.DatabaseError) as e:
        print(f"forgetkit: error: {error_message(e, getattr(args, 'store', None))}", file=sys.stderr)
        return 2


@contextmanager
def _signals_unwind():
    """While a command runs in the main thread, SIGTERM and SIGHUP raise :class:`Terminated`; a
    signal the caller chose to ignore (``nohup``) stays ignored."""
    def handler(signum, frame):
        raise Terminated(signum)

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's capture): nothing to flush
        pass


def error_message(e: BaseException, store: Path | None = None) -> str:
    """One line for an expected failure: the message a user can act on."""
    if isinstance(e, KeyError):
        return str(e.args[0]) if e.args else "missing key"
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        where = e.filename or store or "the output"
        kept = "finished rows are kept" if store is None or Path(store).exists() else "nothing was lost"
        return f"disk full while writing {where}; {kept}; free space and re-run"
    if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
        return f"the store {store or ''} is held by another process ({e}); wait for it to finish and re-run"
    if isinstance(e, sqlite3.DatabaseError):
        return (f"the results store {store} cannot be read ({e}); it was left untouched: give another --out "
                "or move the file away, and re-run")
    if isinstance(e, IsADirectoryError):
        return f"{e.filename} is a directory, not a file; give the file"
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.strerror:
        where = f" {e.filename}" if e.filename else ""
        return f"cannot write{where}: {e.strerror}; check the path and its permissions"
    return str(e)
