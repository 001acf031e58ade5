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
from typing import Iterable, Iterator

from hm3.core.errors import HM3Error


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
        owner = sibling.name[len(path.name) + 2 : -len(PARTIAL)].rsplit(".", 1)[0]
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


def output_path(path: str | os.PathLike) -> Path:
    """``path`` made absolute without following a link at its last name.

    `.`, `..` and `/` have no name of their own (``Path('.').name == ''``), so they are
    resolved in full; any other path keeps its last name, so that a link there is seen.
    """
    path = Path(path).expanduser()
    if path.name in ("", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def check_output_dir(
    path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> Path:
    """The one rule for an output folder; returns its absolute path or raises HM3Error.

    Writing a folder replaces whatever is at its path, so refused are: a symbolic link
    (live or dangling; never followed) and, when something exists there, `/`, the current
    folder or an ancestor of it, any of ``inputs`` (or a path inside or above one), a
    non-folder, and a folder with entries unless ``overwrite``. An empty folder is used as
    if new. Callers check before expensive work; `atomic_dir` checks again.
    """
    try:
        out = output_path(path)
        if out.is_symlink():
            raise HM3Error(
                f"{path}: is a symbolic link (to {os.readlink(out)}); hm3 neither writes through "
                "nor replaces a link: give a real folder"
            )
        if not out.exists():  # a new folder, even inside an input, destroys nothing
            return out
        _refuse_protected(out, path, inputs)
        if not out.is_dir():
            raise HM3Error(f"{path}: exists and is not a folder; give a new folder")
        if not overwrite and any(out.iterdir()):
            raise HM3Error(
                f"{path}: exists and is not empty; give a new folder, or --overwrite to replace it"
            )
        return out
    except OSError as err:  # unreadable folder, deleted cwd: a message, not a traceback
        raise HM3Error(f"{path}: cannot check the output folder ({err.strerror or err})") from None
    except RuntimeError as err:  # a symbolic link loop (Python < 3.13 raises RuntimeError)
        raise HM3Error(f"{path}: cannot check the output folder ({err})") from None


def _refuse_protected(out: Path, shown, inputs) -> None:
    """Paths never replaced, even with overwrite: replacing a folder deletes all it holds."""
    if out == Path(out.anchor):
        raise HM3Error(f"{shown}: is the root folder; give a new folder")
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        where = "the current folder" if out == cwd else f"an ancestor of the current folder {cwd}"
        raise HM3Error(
            f"{shown}: is {where}; replacing it would delete what it holds: give a new folder"
        )
    for item in inputs:
        # the input as named (a link) and as resolved (the folder read)
        for source in {output_path(item), Path(item).expanduser().resolve()}:
            if out == source:
                relation = "is"
            elif source in out.parents:
                relation = "is inside"
            elif out in source.parents:
                relation = "holds"
            else:
                continue
            raise HM3Error(
                f"{shown}: {relation} the input {item}; hm3 never writes over what it reads: "
                "give a new folder"
            )


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` only if the block succeeds.

    ``path`` must pass `check_output_dir` (before the block, and again before the move,
    as the block may run for hours); ``inputs``: what the caller reads, never replaced.
    """
    inputs = list(inputs)
    path = check_output_dir(path, overwrite=overwrite, inputs=inputs)
    try:
        tmp = _tmp_sibling(path, "dir")
    except OSError as err:  # parent is a file, read-only or missing permissions
        raise HM3Error(
            f"{path}: cannot create a folder beside it ({err.strerror or err})"
        ) from None
    try:
        yield tmp
        check_output_dir(path, overwrite=overwrite, inputs=inputs)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``. An existing folder is renamed aside first and deleted
    last, so the old or the new folder is on disk at every moment (if killed in between,
    both are dead partials that the next writer of ``path`` removes)."""
    aside = None
    try:
        if path.exists():
            aside = path.parent / f".{path.name}.{_owner_tag()}.old{os.urandom(4).hex()}{PARTIAL}"
            os.rename(path, aside)
        try:
            os.replace(tmp, path)
        except OSError:
            if aside is not None:
                os.rename(aside, path)  # put the old folder back
            raise
    except OSError as err:
        raise HM3Error(
            f"{path}: could not move the finished output into place ({err.strerror or err})"
        ) from None
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def check_output_file(path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Where a file output goes, or HM3Error. A folder there is refused (replacing it would
    delete its contents); a link is written through to its file, as a shell redirection
    does, so the link stays; a dangling link is refused; an existing file only with
    ``overwrite``."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if path.is_symlink() and not target.exists():
        raise HM3Error(
            f"{path}: is a symbolic link to {os.readlink(path)}, which does not exist; "
            "give a file path"
        )
    if target.is_dir():
        raise HM3Error(f"{path}: is a folder, not a file; give a file path")
    if target.exists() and not overwrite:
        raise HM3Error(f"{path}: exists; use --overwrite to replace it")
    return target


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file that replaces ``path`` only if the block succeeds."""
    path = check_output_file(path)
    try:
        tmp = _tmp_sibling(path, "file")
    except OSError as err:  # parent is a file, read-only or missing permissions
        raise HM3Error(f"{path}: cannot create a file beside it ({err.strerror or err})") from None
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
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise HM3Error(
                    f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})"
                ) from None
            if not isinstance(record, dict):
                raise HM3Error(
                    f"{path}:{number}: expected one JSON object per line, got a {type(record).__name__}"
                )
            records.append(record)
    return records


def mirror_links(paths: Iterable[str | os.PathLike], destination: str | os.PathLike) -> int:
    """Hard-link every file under ``paths`` (files or folders, relative to the working
    directory) to the same relative place under ``destination`` (a copy where no link
    can be made: another filesystem). Files stay the same inodes and folders get their
    source's modification times, so a workflow run in ``destination`` finds them as old
    as they are here and does not rebuild them. Each top-level path appears at once
    (mirrored beside it, then renamed): an interruption leaves whole paths or none.
    Returns the number of files."""
    destination, count = Path(destination), 0
    for source in map(Path, paths):
        if source.is_absolute() or not source.exists():
            raise HM3Error(f"cannot mirror {source}: not an existing path relative to the run")
        target = destination / source
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_sibling(target, "dir")
        count += _mirror(source, tmp / source.name)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(tmp / source.name, target)
        tmp.rmdir()
    return count


def _mirror(source: Path, target: Path) -> int:
    if source.is_file():
        try:
            os.link(source, target)
        except OSError:  # another filesystem, or links not allowed: a copy keeps the mtime
            shutil.copy2(source, target)
        return 1
    target.mkdir()
    count = sum(_mirror(child, target / child.name) for child in sorted(source.iterdir()))
    stat = source.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # after its children
    return count
