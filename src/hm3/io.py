"""Atomic output helpers: an interrupted run never leaves a finished-looking output.

Every file or directory hm3 writes goes to a temporary sibling first and is renamed
into place only when complete (rename is atomic within one filesystem).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


PARTIAL = ".partial"


def _owner_tag() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def remove_dead_partials(path: Path) -> list[Path]:
    """Delete the temporary siblings of ``path`` that a killed process left behind.

    A SIGKILL skips the clean-up below, and a half-written 7B export is 14 GB of disk;
    the next writer of the same output removes them. A sibling is removed only when its
    name says it belongs to a process of this host that no longer exists.
    """
    removed = []
    host = socket.gethostname()
    for sibling in path.parent.glob(f".{glob.escape(path.name)}.*{PARTIAL}"):
        owner = sibling.name[len(path.name) + 2:-len(PARTIAL)].rsplit(".", 1)[0]
        pid, _, owner_host = owner.partition("@")
        if owner_host != host or not pid.isdigit() or pid_exists(int(pid)):
            continue
        if sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        removed.append(sibling)
    return removed


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_sibling(path: Path, kind: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(path)
    maker = tempfile.mkdtemp if kind == "dir" else tempfile.mkstemp
    # the owner in the name lets a later run tell a killed writer's leftovers from live ones
    made = maker(prefix=f".{path.name}.{_owner_tag()}.", suffix=PARTIAL, dir=path.parent)
    if isinstance(made, tuple):  # mkstemp returns (fd, name)
        os.close(made[0])
        made = made[1]
    # mkstemp/mkdtemp create private (0600/0700) entries; outputs get the usual mode
    os.chmod(made, (0o777 if kind == "dir" else 0o666) & ~_umask())
    return Path(made)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    tmp = _tmp_sibling(path, "dir")
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    tmp = _tmp_sibling(path, "file")
    try:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, records) -> None:
    with atomic_file(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """One JSON object per line (blank lines skipped); a bad line is named by file and number."""
    from hm3.errors import HM3Error

    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise HM3Error(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise HM3Error(f"{path}:{number}: expected one JSON object per line, got a {type(record).__name__}")
            records.append(record)
    return records
