"""One writer per run directory: an advisory lock file ``WORKDIR/.lock``.

The lock is an ``fcntl.flock`` on ``WORKDIR/.lock``, which the kernel releases when the
holder exits, however it exits (``kill -9`` included), so a dead holder can never block a
run. The file records the holder — ``{"pid", "host", "started", "argv"}`` — so a refused
writer can say who holds the directory. Finding a non-empty record on a lock we could take
means the previous holder died without releasing it (a stale lock): it is taken over with a
note on stderr. On release the record is emptied (the file itself stays: unlinking a flock'ed
file races with a third process opening it).

Limits: ``flock`` is local to one machine (and unreliable on some network file systems); the
host name in the record lets a refused writer on another machine see who holds it.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
import time
from typing import Any

from tapjax.checkpoints import CheckpointError

LOCK_NAME = ".lock"


class WorkdirBusyError(CheckpointError):
    """Another live process holds the run directory's lock (the message names it)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "an unknown process (the lock record is empty or being written)"
    return (f"pid {info.get('pid')} on host {info.get('host')} (started {info.get('started')}, "
            f"command {' '.join(map(str, info.get('argv', []))) or '?'})")


def _read_record(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 65536)
        info = json.loads(raw.decode()) if raw.strip() else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None


class WorkdirLock:
    """Exclusive, non-blocking lock of a run directory; a context manager.

    ``with WorkdirLock(workdir): ...`` — raises :class:`WorkdirBusyError` naming the holder
    when another live process holds it. Attributes after entering: ``path`` (the lock file),
    ``acquired_at`` (``time.time()`` when taken), ``took_over`` (the stale holder's record,
    or None).
    """

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_NAME)
        self._fd: int | None = None
        self.took_over: dict[str, Any] | None = None
        self.acquired_at: float | None = None

    def acquire(self) -> "WorkdirLock":
        try:
            os.makedirs(self.workdir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise CheckpointError(
                f"{self.path}: cannot create the workdir lock ({e.strerror or e}); nothing was "
                "written. Make the directory writable or choose another --workdir") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_record(fd)
            os.close(fd)
            raise WorkdirBusyError(
                f"{self.workdir} is in use by {_describe(holder)} (lock file {self.path}); a second "
                "writer would mix two runs. Wait for it to finish, stop it, or use another "
                "--workdir") from None
        stale = _read_record(fd)
        if stale and not (stale.get("pid") == os.getpid() and stale.get("host") == socket.gethostname()):
            same_host = stale.get("host") == socket.gethostname()
            alive = same_host and isinstance(stale.get("pid"), int) and _pid_alive(stale["pid"])
            state = ("no longer running" if same_host and not alive else
                     "no longer holding it" if same_host else "on another host, lock released")
            print(f"note: {self.path}: taking over the stale lock of {_describe(stale)}, {state}",
                  file=sys.stderr)
            self.took_over = stale
        self.acquired_at = time.time()
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "argv": list(sys.argv)}
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(record) + "\n").encode())
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise CheckpointError(f"{self.path}: cannot write the workdir lock ({e.strerror or e}); "
                                  "nothing else was written") from e
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK_NAME", "WorkdirBusyError", "WorkdirLock"]
