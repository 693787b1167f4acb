"""File utilities shared by every command that reads or writes: checksums, atomic writes
with the usual permissions, checks that turn bad paths into one clear sentence, and the
clean-up of temporary files that a killed run left behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from selfswap.errors import SelfswapError

#: A part file untouched for this long and held open by no process is stale (the delay
#: covers the moment between a writer closing its part file and renaming it).
STALE_GRACE_S = 10.0
#: Where open files cannot be listed (no /proc), part files older than this are stale.
STALE_AGE_S = 24 * 3600.0


class OutputError(SelfswapError):
    """An output path cannot be written (a folder, unwritable, one of the inputs, ...)."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def os_error_sentence(exc: OSError) -> str:
    """One sentence for an OSError: the path it concerns and the system's reason."""
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    name = exc.filename
    if name is None:
        return f"{reason}."
    if exc.filename2 is not None:
        return f"{name} -> {exc.filename2}: {reason}."
    return f"{name}: {reason}."


def resolved(path: str | os.PathLike, error: type[SelfswapError] = SelfswapError) -> Path:
    """`path` made absolute with symbolic links followed; a symbolic link loop raises
    `error` (pathlib raises RuntimeError or OSError for it, depending on Python)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        raise error(f"{path}: symbolic link loop; point it at a real file.") from None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file: the same resolved path, or (for existing
    files) the same inode, which also catches hard links."""
    if resolved(a) == resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_input_as_output(output: str | os.PathLike, inputs: Iterable) -> None:
    """Raise `OutputError` when `output` is one of `inputs` (None entries are skipped)."""
    for item in inputs:
        if item is not None and same_file(output, item):
            raise OutputError(
                f"{output} is also an input ({item}); writing it would replace the input, "
                "so choose another output name."
            )


def check_input_path(path: str | os.PathLike, error: type[SelfswapError] = SelfswapError) -> Path:
    """Refuse a symbolic link loop with a sentence (other problems are the reader's)."""
    resolved(path, error)
    return Path(path)


def _nearest_existing(path: Path) -> Path:
    for parent in path.parents:
        try:
            if parent.exists() or parent.is_symlink():
                return parent
        except OSError:
            continue
    return Path(".")


def check_output_path(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Check early that `path` can be written: it is not an existing folder (a file output)
    or file (`folder=True`), its parents are folders, and the nearest existing one lets us
    create files. Raises `OutputError` with one sentence; returns `Path(path)`."""
    path = Path(path)
    full = resolved(path)
    if not folder and full.is_dir():
        raise OutputError(f"{path} is a folder; give a file name for the output.")
    if folder and full.exists() and not full.is_dir():
        raise OutputError(f"{path} is a file, not a folder; choose a folder for the output.")
    parent = full if folder and full.is_dir() else _nearest_existing(full)
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {path}: {parent} is a file, not a folder; choose another output."
        )
    try:
        # an unnamed temporary file: nothing is left behind even if we are killed here
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: the folder {parent} is not writable "
            f"({exc.strerror or exc}); choose another output folder."
        ) from None
    return path


def _current_umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # only reading it: POSIX has no call that reads without setting
    os.umask(mask)
    return mask


def output_mode(path: str | os.PathLike) -> int:
    """Permission bits a new output at `path` should get: those of the file it replaces,
    else 0666 less the umask, as `open(path, "w")` would give."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~_current_umask()


def part_prefix(path: str | os.PathLike) -> str:
    """Name prefix of the hidden temporary files of `path` (`.NAME.`)."""
    return f".{Path(path).name}."


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp_path)` then move the result onto `path` in one step, so a crash
    never leaves a partial file under the final name. The temporary file is a hidden sibling
    `.NAME.XXXX.part`, held open until it is renamed (which is how `remove_stale_parts`
    tells a live one from a leftover) and removed on any error or interruption. The result
    gets the usual permissions (see `output_mode`). Unwritable paths raise `OutputError`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=part_prefix(path), suffix=".part", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, output_mode(path))
        if os.name == "nt":  # Windows cannot rename a file that is open
            os.close(fd)
            fd = -1
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _USER_ERRNOS:
            raise _write_error(path, exc) from None
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    return path


#: Write failures that are the user's environment, not a bug: shown as one sentence.
_USER_ERRNOS = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR,
    errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP, errno.EFBIG, errno.ENOENT,
}  # fmt: skip


def _write_error(path: Path, exc: OSError) -> OutputError:
    """The clearest sentence for a failed write: what `check_output_path` finds wrong with
    the path, else the system's reason."""
    try:
        check_output_path(path)
    except SelfswapError as found:
        return OutputError(str(found))
    return OutputError(f"cannot write {path}: {exc.strerror or exc}.")


def _part_pattern(path: Path) -> re.Pattern[str]:
    """Hidden temporary files of `path`: `atomic_write`'s `.NAME.XXXX.part` and the video
    writer's `.STEM.XXXX.partSUFFIX`."""
    name, stem, suffix = (re.escape(s) for s in (path.name, path.stem, path.suffix))
    return re.compile(rf"^(?:\.{name}\.[^/]+\.part|\.{stem}\.[0-9a-f]+\.part{suffix})$")


def _open_files() -> set[tuple[int, int]] | None:
    """(device, inode) of every file open in a process we may inspect; None where the
    system does not tell (no /proc)."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    found: set[tuple[int, int]] = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or another user's process
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                st = os.stat(f"{fd_dir}/{fd}")
                found.add((st.st_dev, st.st_ino))
    return found


def remove_stale_parts(path: str | os.PathLike) -> list[Path]:
    """Delete the hidden temporary files of output `path` that an earlier run left when it
    was killed (kill -9, power loss) and return them.

    A part file is stale when it belongs to the current user, no process holds it open (the
    writers keep theirs open until the final rename; checked through /proc) and it has not
    been modified for `STALE_GRACE_S`. Where open files cannot be listed, only part files
    older than `STALE_AGE_S` are removed, so a run in progress is never disturbed.
    """
    path = Path(path)
    folder = path.parent
    pattern = _part_pattern(path)
    try:
        candidates = [folder / n for n in os.listdir(folder) if pattern.match(n)]
    except OSError:
        return []
    if not candidates:
        return []
    now = time.time()
    open_files = _open_files()
    removed = []
    for part in candidates:
        try:
            st = part.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            continue
        age = now - st.st_mtime
        if open_files is None:
            stale = age > STALE_AGE_S
        else:
            stale = age > STALE_GRACE_S and (st.st_dev, st.st_ino) not in open_files
        if stale:
            with contextlib.suppress(OSError):
                part.unlink()
                removed.append(part)
    return removed
