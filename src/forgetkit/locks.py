"""One run per output directory: ``forgetkit run`` holds a lock on its ``--out``.

Two runs on one directory would both do all the work (the store keeps each row once, but every
cell is computed twice). The lock is an ``fcntl`` lock on ``OUT/.forgetkit.lock``, which the
kernel drops when its process dies, so a lock left by a killed run is simply taken over; the file
holds the holder's pid, start time and command line for the message the second run prints.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

LOCK_NAME = ".forgetkit.lock"


class DirectoryBusy(ValueError):
    """Another live process holds the directory's lock."""


class DirectoryLock:
    """``with DirectoryLock(out_dir, wait=False):`` — exclusive use of ``out_dir``.

    ``wait=False`` refuses at once with a :class:`DirectoryBusy` naming the holder; ``wait=True``
    blocks until the holder finishes (``on_wait(holder)`` is called once first). On release the
    lock file is removed, and the directory too if this lock created it and it is still empty.
    """

    def __init__(self, out_dir: str | Path, *, wait: bool = False, on_wait=None):
        self.dir = Path(out_dir)
        self.path = self.dir / LOCK_NAME
        self.wait = wait
        self.on_wait = on_wait
        self._fd: int | None = None
        self._created_dir = False

    def __enter__(self) -> DirectoryLock:
        try:
            self._acquire()
        except BaseException:
            self._remove_dir_if_created()
            raise
        return self

    def _acquire(self) -> None:
        waited = False
        while True:
            if not self.dir.exists():  # absent, or removed empty by the holder we waited for
                self.dir.mkdir(parents=True, exist_ok=True)
                self._created_dir = True
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                if not self.wait:
                    os.close(fd)
                    raise DirectoryBusy(f"{self.dir} is in use by another forgetkit run ({describe(holder)}); "
                                        "wait for it to finish, or pass --wait to start when it does") from None
                if not waited and self.on_wait is not None:
                    self.on_wait(holder)
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            # the holder may have removed the file while we waited: then our lock guards nothing
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps(current_holder()).encode())
                os.fsync(fd)
                return
            os.close(fd)

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)  # closing drops the lock, after the file is gone
            self._fd = None
        self._remove_dir_if_created()

    def _remove_dir_if_created(self) -> None:
        if self._created_dir:
            try:
                self.dir.rmdir()  # only if empty: a failed-early run leaves no trace
            except OSError:
                pass


def current_holder() -> dict:
    """What the lock file records about this process."""
    return {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"}


def describe(holder: dict | None) -> str:
    if not holder:
        return "pid unknown: the lock file is being written"
    return f"pid {holder.get('pid')}, started {holder.get('started')}, command: {holder.get('command')}"


def _read_holder(fd: int) -> dict | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 65536).decode() or "null")
    except (OSError, ValueError):
        return None
