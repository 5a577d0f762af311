"""One writer per store: an advisory lock that dies with the process holding it.
(Stores at a URL other than file:// are written unlocked: object stores have no flock.)

A store has two locks, next to it (so they exist before the store does and survive
`--overwrite`): `STORE.lock`, held by whoever writes the captured data (capture,
`stores repair`), and `STORE.analysis.lock`, held by `python -m analyze` while it reads
the store's earlier results and writes its `analysis/` groups. They are separate so that
analysis can run while a capture writes (it reads committed epochs only), and two
analyses of one store cannot interleave their writes: the second is refused, as a second
capture is. Both are held with `flock`, which the kernel releases when the holder exits,
however it exits (SIGKILL, OOM, a preempted node's NFS lease running out): a dead process
never leaves a lock behind, and the file it leaves (with its stale text) is simply
locked again by the next one. The file's text (purpose, pid, host, start time) only
serves the message shown to a second holder; the file is removed on release.
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
from .errors import StoreError

log = logging.getLogger(__name__)

# File systems without flock support: warn and go on unlocked rather than refuse to work.
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class LockError(StoreError):
    """Another live process is writing the store."""


WRITE, ANALYSIS = "write", "analysis"  # the two locks of a store
_SUFFIX = {WRITE: ".lock", ANALYSIS: ".analysis.lock"}
_DOING = {"capture": "written", "repair": "repaired", "analysis": "analysed"}  # by the holder's purpose


def lock_path(store: str, which: str = WRITE) -> str:
    """Where a store's lock file is (`STORE.lock`, `STORE.analysis.lock`), beside it.

    Parameters
    ----------
    store : str
        The store.
    which : {"write", "analysis"}, default "write"
        Which of its two locks.

    Returns
    -------
    str
    """
    return f"{str(store).rstrip('/')}{_SUFFIX[which]}"


class StoreLock:
    """One of a store's two locks, held with `flock` (`with StoreLock(path):`).

    Parameters
    ----------
    store : str
        The store.
    purpose : {"capture", "repair", "analysis"}, default "capture"
        Who holds it (told to a second holder); "analysis" takes the analysis lock.
    which : {"write", "analysis"}, optional
        The lock, where the purpose alone does not say (`repair` takes both).

    Attributes
    ----------
    store, path : str
        The store and its lock file.
    purpose, which : str
        As given.
    """

    def __init__(self, store: str, purpose: str = "capture", which: str | None = None):
        which = which or (ANALYSIS if purpose == "analysis" else WRITE)
        self.store, self.path, self.purpose = str(store).rstrip("/"), lock_path(store, which), purpose
        self.which = which
        self._fd: int | None = None

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (LockError, naming the holder, if a live process has it)."""
        if not location.is_local(self.store):  # object stores have no flock
            log.info("%s is not on a local file system: written without a lock", self.store)
            return
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                purpose, holder = _read(fd, "analysis" if self.which == ANALYSIS else "capture")
                os.close(fd)
                doing = _DOING.get(purpose, "used")
                raise LockError(f"{self.store} is being {doing} by another process ({holder}); "
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
        """Give the lock back and remove its file."""
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


def _read(fd: int, default: str) -> tuple[str, str]:
    """(the holder's purpose, the holder as the refusal names it); `default` is the
    purpose of a holder that has not written its text yet."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        purpose = str(info.get("purpose") or default)
        return purpose, (f"{purpose}, pid {info.get('pid', '?')} on "
                         f"{info.get('host', '?')} since {info.get('since', '?')}")
    except (OSError, ValueError):
        return default, "unknown holder"
