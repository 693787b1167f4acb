"""What to prepare: input listing (folder or list file), duplicates, shards, identity labels."""

from __future__ import annotations

import csv
import hashlib
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from selfswap.errors import SelfswapError


@dataclass(frozen=True)
class Source:
    """One input entry: `key` is the path as recorded in the table (relative to the input
    folder or the list's root, POSIX separators); `path` is where to read it."""

    key: str
    path: Path


@dataclass(frozen=True)
class Duplicate:
    """An input entry naming a file that an earlier entry already named."""

    key: str
    first: str


def _walk_folder(folder: Path, exclude: Path | None) -> list[Source]:
    sources = []
    exclude_resolved = exclude.resolve() if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and (here / d).resolve() != exclude_resolved
        )
        for name in filenames:
            if name.startswith("."):
                continue
            path = here / name
            sources.append(Source(path.relative_to(folder).as_posix(), path))
    return sources


def _read_list(list_file: Path, root: Path) -> list[Source]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise SelfswapError(
            f"{list_file}: --input must be a folder or a text file listing image paths."
        ) from None
    sources = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        key = posixpath.normpath(entry.replace(os.sep, "/"))
        path = Path(entry)
        sources.append(Source(key, path if path.is_absolute() else root / path))
    return sources


def list_sources(
    input_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    exclude: str | os.PathLike | None = None,
) -> tuple[list[Source], list[Duplicate]]:
    """Unique inputs sorted by key, and the duplicate entries (in input order).

    `input_path` is a folder (walked recursively; hidden files skipped; `exclude` — the
    output folder — is never entered) or a text file with one path per line (relative paths
    are resolved against `root`, default the list file's folder; blank lines and `#`
    comments are ignored). Every non-hidden file is listed, images or not: files that turn
    out not to be images are reported, not silently dropped.
    """
    input_path = Path(input_path)
    if input_path.is_dir():
        if root is not None:
            raise SelfswapError("--root only applies when --input is a list file.")
        entries = _walk_folder(input_path, Path(exclude) if exclude is not None else None)
    elif input_path.is_file():
        base = Path(root) if root is not None else input_path.parent
        if not base.is_dir():
            raise SelfswapError(f"--root {base}: no such folder.")
        entries = _read_list(input_path, base)
    else:
        raise SelfswapError(f"--input {input_path}: no such folder or list file.")
    unique: dict[str, Source] = {}
    by_file: dict[str, str] = {}
    duplicates = []
    for src in entries:
        real = os.path.realpath(src.path)
        first = unique.get(src.key) or (unique.get(by_file[real]) if real in by_file else None)
        if first is not None:
            duplicates.append(Duplicate(src.key, first.key))
            continue
        unique[src.key] = src
        by_file[real] = src.key
    return sorted(unique.values(), key=lambda s: s.key), duplicates


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`"i/N"` → `(i, N)` with 0 ≤ i < N; None stays None."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise SelfswapError(f"--shard {text!r}: expected i/N, e.g. 0/4.") from None
    if count < 1 or not 0 <= index < count:
        raise SelfswapError(f"--shard {text!r}: need 0 <= i < N.")
    return index, count


def shard_of(key: str, count: int) -> int:
    """Stable shard number of an input key (independent of listing order and machine)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) % count


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    return shard is None or shard_of(key, shard[1]) == shard[0]


IdentityFn = Callable[[str], "str | None"]


def _folder_identity(key: str) -> str | None:
    return PurePosixPath(key).parent.name or None


def _csv_identities(path: Path) -> IdentityFn:
    if not path.is_file():
        raise SelfswapError(f"--identity-from csv:{path}: no such file.")
    with path.open(newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    if rows and rows[0][0].strip().lower() in ("file", "path", "image", "filename", "name"):
        rows = rows[1:]
    if not rows or any(len(row) < 2 for row in rows):
        raise SelfswapError(f"{path}: expected CSV rows 'file,identity' (with a header).")
    by_key = {posixpath.normpath(r[0].strip()): r[1].strip() for r in rows}
    by_name = {PurePosixPath(k).name: v for k, v in by_key.items()}

    def lookup(key: str) -> str | None:
        return by_key.get(key) or by_name.get(PurePosixPath(key).name) or None

    return lookup


def identity_labeler(spec: str | None) -> IdentityFn:
    """Identity label of an input key: `folder` (parent folder name, LFW style),
    `csv:FILE` (CSV of file,identity; matched on the key, then on the file name), or None."""
    if spec is None:
        return lambda key: None
    if spec == "folder":
        return _folder_identity
    if spec.startswith("csv:"):
        return _csv_identities(Path(spec[4:]))
    raise SelfswapError(f"--identity-from {spec!r}: use 'folder' or 'csv:FILE'.")


def identity_setting(spec: str | None) -> str | None:
    """How the identity source is recorded in the settings (machine-independent)."""
    if spec and spec.startswith("csv:"):
        return f"csv:{Path(spec[4:]).name}"
    return spec
