"""`selfswap prepare`: turn a folder (or list) of face photos into aligned crops plus one
metadata table, once, in parallel, restartable and shardable.

Layout of a prepared folder::

    settings.json      what determines the content (size, filters, template, ...); written
                       first, and checked by every later run or merge
    parts/part-*.parquet
                       committed work: each part holds the face rows of a chunk of images
                       and, in its metadata, the outcome of every image of the chunk
    crops/xx/*.jpg     aligned R×R crops (see `process.crop_name`)
    faces.parquet      the consolidated table: one row per face, sorted by source, face
    rejected.tsv       every input without a face row, with the reason
    manifest.json      settings, counts and the last run's throughput; written last (a
                       folder without it is unfinished; `FaceDataset` checks it against
                       the table)

Every file is written atomically (temporary file + rename), so a crash or Ctrl-C at any
moment leaves at most a hidden temporary file, removed by the next run. A re-run skips every
image already recorded in a part file; the final table depends only on the inputs and the
settings, not on workers, chunking, interruptions or sharding.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from selfswap.errors import SelfswapError

from . import table as tbl
from .process import (
    UNREADABLE_REASONS,
    Chunk,
    Item,
    crop_name,
    init_worker,
    process_chunk,
    worker_chunk,
)
from .settings import DEFAULT_CHUNK_SIZE, Settings
from .sources import (
    identity_labeler,
    identity_setting,
    in_shard,
    list_sources,
    parse_shard,
)

FORMAT = "selfswap-prepared"
FORMAT_VERSION = 1

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Summary:
    """Outcome of a run or merge (also stored in `manifest.json` under "counts")."""

    output: Path
    images_seen: int = 0
    images_with_faces: int = 0
    faces: int = 0
    identities: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    processed_now: int = 0
    seconds: float = 0.0
    workers: int = 1

    @property
    def unreadable(self) -> int:
        return sum(self.rejected.get(r, 0) for r in UNREADABLE_REASONS)

    @property
    def images_per_second(self) -> float:
        return self.processed_now / self.seconds if self.seconds > 0 else 0.0

    def counts(self) -> dict:
        return {
            "images_seen": self.images_seen,
            "images_with_faces": self.images_with_faces,
            "faces": self.faces,
            "identities": self.identities,
            "rejected": dict(sorted(self.rejected.items())),
            "unreadable": self.unreadable,
        }

    def report(self) -> str:
        """The end-of-run summary, a few lines."""
        rate = self.images_with_faces / self.images_seen if self.images_seen else 0.0
        lines = [
            f"{self.output}: {self.images_seen:,} images seen, {self.images_with_faces:,} "
            f"with a face ({rate:.1%}), {self.faces:,} faces kept, "
            f"{self.identities:,} identities",
        ]
        if self.rejected:
            reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.rejected.items()))
            lines.append(f"rejected: {reasons}")
        if self.unreadable:
            lines.append(f"unreadable files: {self.unreadable:,} (paths in {tbl.REJECTED_FILE})")
        if self.processed_now:
            lines.append(
                f"processed {self.processed_now:,} images in {self.seconds:.1f} s with "
                f"{self.workers} worker(s): {self.images_per_second:.2f} images/s"
            )
        return "\n".join(lines)


# --- output folder: settings check and lock ------------------------------------------------


def _describe_differences(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} vs {new.get(k)!r}" for k in keys)


def _claim_output(output: Path, settings: Settings, shard: str | None) -> None:
    """Create the output folder, or check an existing one was prepared the same way."""
    marker = output / tbl.SETTINGS_FILE
    wanted = settings.to_dict()
    if marker.is_file():
        existing = tbl.read_json(marker)
        old = existing.get("settings", {})
        if old.get("size") != settings.size:
            raise SelfswapError(
                f"{output} was prepared at size {old.get('size')}, not {settings.size}; "
                f"use another --output folder, or --size {old.get('size')} to resume it."
            )
        if old != wanted:
            raise SelfswapError(
                f"{output} was prepared with other settings "
                f"({_describe_differences(old, wanted)}); use another --output folder."
            )
        if existing.get("shard") != shard:
            raise SelfswapError(
                f"{output} holds shard {existing.get('shard') or 'all'}, not "
                f"{shard or 'all'}; use one output folder per shard."
            )
        return
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise SelfswapError(
            f"{output} exists and is not a selfswap prepared folder; choose a new --output."
        )
    output.mkdir(parents=True, exist_ok=True)
    tbl.write_json(
        marker,
        {"format": FORMAT, "version": FORMAT_VERSION, "settings": wanted, "shard": shard},
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _locked(output: Path) -> Iterator[None]:
    """One prepare at a time per output folder; a lock left by a killed run is taken over."""
    lock = output / ".lock"
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            host, _, pid = lock.read_text().partition(" ")
            if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
                lock.unlink(missing_ok=True)
                continue
            raise SelfswapError(
                f"{output} is in use by another selfswap prepare ({host}, pid {pid}); "
                f"if it is not running, delete {lock}."
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


# --- parts ----------------------------------------------------------------------------------


def _part_files(output: Path) -> list[Path]:
    return sorted((output / tbl.PARTS_DIR).glob("part-*.parquet"))


def _part_keys(part: Path) -> list[str]:
    raw = (pq.read_schema(part).metadata or {}).get(b"selfswap")
    return [record[0] for record in json.loads(raw)["images"]] if raw else []


def _done_keys(output: Path) -> set[str]:
    done: set[str] = set()
    for part in _part_files(output):
        done.update(_part_keys(part))
    return done


def _plan_chunks(output: Path, items: list[Item], chunk_size: int) -> list[Chunk]:
    existing = _part_files(output)
    start = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    return [
        Chunk(
            f"{tbl.PARTS_DIR}/part-{start + n:05d}.parquet",
            tuple(items[i : i + chunk_size]),
        )
        for n, i in enumerate(range(0, len(items), chunk_size))
    ]


def _collect_parts(output: Path, planned: set[str]) -> tuple[list[pa.Table], dict]:
    """Face rows and image records of the planned keys, each from the first part holding
    it (a key can be in two parts only if an earlier run's part was superseded)."""
    records: dict[str, tuple[str, str]] = {}
    tables = []
    for part in _part_files(output):
        table, meta = tbl.read_parquet(part)
        fresh = []
        for key, status, detail in meta.get("images", []):
            if key in planned and key not in records:
                records[key] = (status, detail)
                fresh.append(key)
        if fresh and table.num_rows:
            mask = pc.is_in(table.column("source"), value_set=pa.array(fresh, pa.string()))
            tables.append(table.filter(mask))
    return tables, records


# --- consolidation --------------------------------------------------------------------------


def _finalize_table(faces: pa.Table) -> pa.Table:
    """Sort rows by (source, face index) and number the identities 0..K-1 (-1: unknown)."""
    if "identity_id" in faces.column_names:
        faces = faces.drop_columns(["identity_id"])
    faces = faces.sort_by([("source", "ascending"), ("face_index", "ascending")])
    labels = faces.column("identity").to_pylist()
    names = sorted({label for label in labels if label is not None})
    number = {name: i for i, name in enumerate(names)}
    ids = pa.array([number.get(label, -1) for label in labels], pa.int32())
    return faces.append_column("identity_id", ids)


def _write_outputs(
    output: Path, faces: pa.Table, records: list[tuple[str, str, str]], extra: dict
) -> Summary:
    """faces.parquet, rejected.tsv, then manifest.json (the completion marker).

    `records` holds one `(key, status, detail)` per input entry, duplicates included.
    """
    faces = _finalize_table(faces)
    rejected = sorted(record for record in records if record[1] != "kept")
    summary = Summary(
        output=output,
        images_seen=len(records),
        images_with_faces=sum(record[1] == "kept" for record in records),
        faces=faces.num_rows,
        identities=len({v for v in faces.column("identity_id").to_pylist() if v >= 0}),
        rejected=dict(Counter(status for _, status, _ in rejected)),
    )
    tbl.write_parquet(output / tbl.FACES_FILE, faces)
    tbl.write_rejected(output / tbl.REJECTED_FILE, rejected)
    settings = tbl.read_json(output / tbl.SETTINGS_FILE)
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "settings": settings["settings"],
        "shard": settings.get("shard"),
        **extra,
        "counts": summary.counts(),
        "files": {
            "faces": tbl.FACES_FILE,
            "rejected": tbl.REJECTED_FILE,
            "crops": tbl.CROPS_DIR,
        },
    }
    tbl.write_json(output / tbl.MANIFEST_FILE, manifest)
    return summary


def _empty_faces() -> pa.Table:
    return tbl.SCHEMA.empty_table()


# --- prepare --------------------------------------------------------------------------------


def prepare(
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    settings: Settings,
    *,
    root: str | os.PathLike | None = None,
    shard: str | None = None,
    workers: int = 1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    identity_from: str | None = None,
    progress: bool = True,
    log: Log = _stderr,
) -> Summary:
    """Prepare (or resume preparing) `output` from `input_path`; returns the summary.

    `identity_from` is the full spec ("folder" or "csv:PATH"); `settings.identity_from`
    must be `identity_setting(identity_from)` (use `make_settings`).
    Raises `SelfswapError` for unusable arguments or an output folder prepared differently;
    never for bad images. Ctrl-C raises `KeyboardInterrupt` after the committed work is safe.
    """
    output = Path(output)
    shard_tuple = parse_shard(shard)
    if settings.identity_from != identity_setting(identity_from):
        raise ValueError("settings.identity_from does not match identity_from")
    if workers < 1 or chunk_size < 1:
        raise SelfswapError("--workers and --chunk-size must be at least 1.")
    labeler = identity_labeler(identity_from)
    sources, duplicates = list_sources(input_path, root, exclude=output)
    sources = [s for s in sources if in_shard(s.key, shard_tuple)]
    duplicates = [d for d in duplicates if in_shard(d.key, shard_tuple)]
    _claim_output(output, settings, shard)
    with _locked(output):
        tbl.remove_stale_temporaries(output)
        done = _done_keys(output)
        pending = [Item(s.key, str(s.path)) for s in sources if s.key not in done]
        if done and pending:
            log(f"resuming: {len(sources) - len(pending):,} of {len(sources):,} images done")
        chunks = _plan_chunks(output, pending, chunk_size)
        workers = max(1, min(workers, len(chunks)))
        start = time.perf_counter()
        _run_chunks(chunks, settings, output, workers, progress)
        seconds = time.perf_counter() - start

        planned = {s.key for s in sources}
        tables, records = _collect_parts(output, planned)
        missing = planned - records.keys()
        if missing:  # only if parts were deleted while we ran
            raise SelfswapError(f"{len(missing)} images have no result; run prepare again.")
        entries = [(key, status, detail) for key, (status, detail) in records.items()]
        entries += [(d.key, "duplicate", f"same file as {d.first}") for d in duplicates]
        faces = pa.concat_tables(tables) if tables else _empty_faces()
        labels = [
            labeler(src) if main else None
            for src, main in zip(
                faces.column("source").to_pylist(), faces.column("main").to_pylist(), strict=True
            )
        ]
        faces = faces.set_column(
            faces.schema.get_field_index("identity"), "identity", pa.array(labels, pa.string())
        )
        last_run = {
            "processed": len(pending),
            "seconds": round(seconds, 1),
            "workers": workers,
            "images_per_second": round(len(pending) / seconds, 3) if pending else None,
        }
        summary = _write_outputs(
            output,
            faces,
            entries,
            {"input": str(input_path), "identity_source": identity_from, "last_run": last_run},
        )
    summary.processed_now, summary.seconds, summary.workers = len(pending), seconds, workers
    return summary


def _run_chunks(
    chunks: list[Chunk], settings: Settings, output: Path, workers: int, progress: bool
) -> None:
    from tqdm import tqdm

    total = sum(len(c.items) for c in chunks)
    if not total:
        return
    with tqdm(total=total, unit="img", disable=not progress, smoothing=0.05) as bar:
        if workers == 1:
            for chunk in chunks:
                process_chunk(chunk, settings, output, on_image=lambda: bar.update(1))
            return
        context = mp.get_context("spawn")
        with context.Pool(workers, init_worker, (settings, str(output))) as pool:
            for result in pool.imap_unordered(worker_chunk, chunks):
                bar.update(result.images)


def make_settings(
    size: int = 128,
    *,
    identity_from: str | None = None,
    **kwargs,
) -> Settings:
    """`Settings` with validation, the template fingerprint and the identity source."""
    if not 16 <= size <= 4096:
        raise SelfswapError(f"--size {size}: use a crop size between 16 and 4096.")
    if kwargs.get("crop_format", "jpg") not in ("jpg", "png"):
        raise SelfswapError("--crop-format must be jpg or png.")
    if kwargs.get("embedding", "dlib") not in ("dlib", "torch", "none"):
        raise SelfswapError("--embedding must be dlib, torch or none.")
    return Settings.create(size=size, identity_from=identity_setting(identity_from), **kwargs)


# --- merge ----------------------------------------------------------------------------------


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        tbl.atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def merge(
    shard_dirs: list[str | os.PathLike],
    output: str | os.PathLike,
    log: Log = _stderr,
    same_people: Sequence[str] = (),
):
    """Merge finished prepared folders into `output` (crops hard-linked where possible).

    Shards of one input (same settings) merge into the dataset one run would give; an input
    present in two shards is kept once (from the first shard given). Folders that differ
    only in where identities come from (say LFW by folder and CelebA by CSV) are separate
    sets: each set's sources and identities are prefixed with its folder name, so people
    and files of different sets never mix. Any other difference is refused.

    `same_people` names sets (by folder name) whose labels name the same people, such as two
    CelebA sets labelled by CelebA identity number: their identities share one prefix
    (the names joined by "+"), so one person's photos in both sets are one identity.
    """
    output = Path(output)
    shards = [Path(d) for d in shard_dirs]
    if not shards:
        raise SelfswapError("--merge needs at least one prepared folder.")
    manifests = []
    for folder in shards:
        if not (folder / tbl.MANIFEST_FILE).is_file():
            raise SelfswapError(
                f"{folder} is not a finished prepared folder (no {tbl.MANIFEST_FILE}); "
                "finish it with the same prepare command first."
            )
        manifests.append(tbl.read_json(folder / tbl.MANIFEST_FILE))
    first = manifests[0]["settings"]
    for folder, manifest in zip(shards[1:], manifests[1:], strict=True):
        theirs = {**manifest["settings"], "identity_from": first.get("identity_from")}
        if theirs != first:
            raise SelfswapError(
                f"cannot merge {shards[0]} and {folder}: they were prepared with different "
                f"settings ({_describe_differences(first, theirs)})."
            )
    sources = [m["settings"].get("identity_from") for m in manifests]
    as_sets = len(set(sources)) > 1
    prefixes = _set_names(shards) if as_sets else [None] * len(shards)
    unknown = set(same_people) - {p for p in prefixes if p}
    if unknown:
        raise SelfswapError(
            f"same people: {', '.join(sorted(unknown))} is not one of the merged sets "
            f"({', '.join(p for p in prefixes if p) or 'shards of one set'})."
        )
    shared = "+".join(p for p in prefixes if p in set(same_people))
    if not as_sets:
        _warn_incomplete_shards([m.get("shard") for m in manifests], log)
    else:
        described = ", ".join(f"{p}={s}" for p, s in zip(prefixes, sources, strict=True))
        first = {**first, "identity_from": f"sets: {described}"}
    settings = Settings(**first)
    _claim_output(output, settings, None)
    with _locked(output):
        tables, kept, rejected = [], set(), {}
        for folder, prefix in zip(shards, prefixes, strict=True):
            faces, _ = tbl.read_parquet(folder / tbl.FACES_FILE)
            records = tbl.read_rejected(folder / tbl.REJECTED_FILE)
            renamed: dict[str, str] = {}  # crop path in `output` -> path in `folder`
            if prefix is not None:
                people = shared if prefix in set(same_people) else prefix
                faces, records, renamed = _prefixed(
                    faces, records, prefix, settings.crop_format, people
                )
            fresh = set(faces.column("source").to_pylist()) - kept
            kept |= fresh
            for record in records:
                rejected.setdefault(record, None)
            mask = pc.is_in(faces.column("source"), value_set=pa.array(sorted(fresh), pa.string()))
            faces = faces.filter(mask)
            for crop in faces.column("crop").to_pylist():
                _link_or_copy(folder / renamed.get(crop, crop), output / crop)
            tables.append(faces)
        merged = pa.concat_tables(tables) if tables else _empty_faces()
        records = [(key, "kept", "") for key in sorted(kept)] + list(rejected)
        summary = _write_outputs(output, merged, records, {"merged_from": [str(s) for s in shards]})
    return summary


def _set_names(folders: list[Path]) -> list[str]:
    """A short unique name per merged set: its folder name, numbered if repeated."""
    names: list[str] = []
    for folder in folders:
        base = folder.resolve().name
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def _prefixed(
    faces: pa.Table,
    records: list[tuple[str, str, str]],
    prefix: str,
    crop_format: str,
    people: str,
) -> tuple[pa.Table, list[tuple[str, str, str]], dict[str, str]]:
    """`faces` and rejection `records` of one set with sources and crop names moved under
    `prefix/` and identities under `people/`, and the renamed crops (new path -> old path)."""
    sources = [f"{prefix}/{s}" for s in faces.column("source").to_pylist()]
    identities = [None if i is None else f"{people}/{i}" for i in faces["identity"].to_pylist()]
    indices = faces.column("face_index").to_pylist()
    crops = [crop_name(s, i, crop_format) for s, i in zip(sources, indices, strict=True)]
    renamed = dict(zip(crops, faces.column("crop").to_pylist(), strict=True))
    for name, values in {"source": sources, "identity": identities, "crop": crops}.items():
        at = faces.schema.get_field_index(name)
        faces = faces.set_column(at, name, pa.array(values, pa.string()))
    return faces, [(f"{prefix}/{key}", status, detail) for key, status, detail in records], renamed


def _warn_incomplete_shards(specs: list[str | None], log: Log) -> None:
    parsed = [parse_shard(s) for s in specs if s]
    counts = {n for _, n in parsed}
    if len(counts) > 1:
        log(f"warning: merging shards of different splits ({', '.join(map(str, specs))})")
    elif counts:
        (n,) = counts
        missing = sorted(set(range(n)) - {i for i, _ in parsed})
        if missing:
            log(f"warning: shards {', '.join(f'{i}/{n}' for i in missing)} are not merged")


def main(argv: list[str] | None = None) -> int:
    """`python -m selfswap.data.prepare ...`, the same as `selfswap prepare ...`."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Settings", "Summary", "make_settings", "merge", "prepare"]
