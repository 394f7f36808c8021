"""The lock of a cache build: `<out>.lock` holds the builder's pid, host and start time.

A second build into the same directory is refused at once, naming the build that holds the lock; the lock of a
build that no longer runs on this host is taken over by a resume. Created with a hard link, so it is exclusive
and never seen half-written.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

__all__ = ["acquire_lock", "release_lock"]

_log = logging.getLogger("crossjepa.teacher.cache")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _owner_alive(owner: dict) -> bool | None:
    """Whether the build that wrote a lock still runs: None when it ran on another host (cannot tell)."""
    if owner.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _lock_error(out: Path, lock: Path, owner, alive: bool | None) -> ValueError:
    if not isinstance(owner, dict) or not {"pid", "host", "started"} <= set(owner):
        return ValueError(f"cache {out}: unreadable lock file {lock}; if no build is running, delete it")
    who = f"pid {owner['pid']} on host {owner['host']} since {owner['started']} (lock file {lock})"
    if alive is False:
        return ValueError(
            f"cache {out}: an earlier build by {who} is no longer running; rerun with --resume "
            f"(resume=True) to take it over"
        )
    if alive is None:
        return ValueError(
            f"cache {out} is being built by {who}; if that build is dead, delete the lock file and rerun with --resume"
        )
    return ValueError(f"cache {out} is being built by {who}; wait for it to finish or build into another directory")


def acquire_lock(out: Path, resume: bool) -> Path:
    """Create `<out>.lock` holding {pid, host, started}, or raise naming the build that holds it. With `resume`
    the lock of a build that no longer runs on this host is taken over."""
    lock = out.with_name(out.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    mine = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = lock.with_name(f"{lock.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(mine))
    try:
        for _ in range(10):
            try:
                os.link(tmp, lock)  # atomic and exclusive, and the lock is never seen half-written
                return lock
            except FileExistsError:
                pass
            owner = _read_json(lock)
            if owner is None and not lock.exists():
                continue  # released meanwhile
            alive = _owner_alive(owner) if isinstance(owner, dict) and "pid" in owner else True
            if not (resume and alive is False):
                raise _lock_error(out, lock, owner, alive)
            # Take over: move the dead owner's lock aside; if what was moved is not that lock (another resume
            # got there first and holds a fresh one), put it back. Then try again.
            stale = lock.with_name(f"{lock.name}.{os.getpid()}.stale")
            try:
                os.rename(lock, stale)
            except FileNotFoundError:
                continue
            if _read_json(stale) == owner:
                _log.warning(
                    "teacher cache: taking over the lock of pid %s on %s (started %s, no longer running)",
                    owner["pid"],
                    owner["host"],
                    owner.get("started"),
                )
            else:
                try:
                    os.link(stale, lock)
                except FileExistsError:
                    pass
            stale.unlink()
        raise ValueError(f"cache {out}: could not take the lock file {lock} (other builds keep changing it)")
    finally:
        tmp.unlink(missing_ok=True)


def release_lock(lock: Path) -> None:
    owner = _read_json(lock)
    if isinstance(owner, dict) and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)
