"""One writer per store: an advisory lock that dies with the process holding it.
(Stores at a URL other than file:// are written unlocked: object stores have no flock.)

The lock is `STORE.lock`, next to the store (so it exists before the store does and
survives `--overwrite`). It is held with `flock`, which the kernel releases when the
holder exits, however it exits (SIGKILL, OOM, a preempted node's NFS lease running out):
a dead capture never leaves a lock behind. The file's text (pid, host, start time) only
serves the message shown to a second writer; the file is removed on release.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import socket

from . import location
from .writer import StoreError

log = logging.getLogger(__name__)

# File systems without flock support: warn and go on unlocked rather than refuse to work.
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class LockError(StoreError):
    """Another live process is writing the store."""


def lock_path(store: str) -> str:
    return f"{str(store).rstrip('/')}.lock"


class StoreLock:
    """`with StoreLock(path):` holds the write lock of the store at `path`."""

    def __init__(self, store: str, purpose: str = "capture"):
        self.store, self.path, self.purpose = str(store).rstrip("/"), lock_path(store), purpose
        self._fd: int | None = None

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if not location.is_local(self.store):  # object stores have no flock
            log.info("%s is not on a local file system: written without a lock", self.store)
            return
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise LockError(f"{self.store} is being written by another process ({holder}); "
                                "wait for it to end or stop it, then run this again")
            except OSError as err:
                if err.errno not in _UNSUPPORTED:
                    os.close(fd)
                    raise
                log.warning("%s: the file system does not support locks; not locked", self.store)
            # The previous holder may have removed the file between our open and flock:
            # then we hold a lock on a file nobody else can see. Try again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it, so no one locks a removed file
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"{self.store}: cannot create the lock file {self.path} "
                             f"({err.strerror.lower()}); the store's folder must be writable")


def _read(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return (f"{info.get('purpose', 'capture')}, pid {info.get('pid', '?')} on "
                f"{info.get('host', '?')} since {info.get('since', '?')}")
    except (OSError, ValueError):
        return "unknown holder"
