"""Checkpoints: weights as safetensors plus the full training state, written atomically.

A checkpoint is a folder `step-00001000/` holding `weights.safetensors` (the generator,
its EMA, the appearance encoder and the discriminator, `net.name` keys), `state.pt`
(optimizers, schedulers, RNG states, step, data position) and, written last,
`manifest.json` with the size and sha256 of both. It is built under a temporary name and
renamed into place, so a crash never leaves a half-written checkpoint under a real name;
a folder whose files do not match its manifest (truncated, corrupted) is refused with a
`CheckpointError` and `latest_valid` falls back to the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from selfswap.errors import SelfswapError
from selfswap.io.files import sha256_of

WEIGHTS = "weights.safetensors"
STATE = "state.pt"
MANIFEST = "manifest.json"
PREFIX = "step-"


class CheckpointError(SelfswapError):
    """A checkpoint is missing, truncated or corrupt."""


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flat_weights(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            out[f"{name}.{key}"] = value.detach().to("cpu").contiguous().clone()
    return out


def split_weights(flat: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    prefix = name + "."
    return {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def save_checkpoint(
    folder: Path, step: int, weights: dict[str, torch.Tensor], state: dict, meta: dict
) -> Path:
    """Write checkpoint `folder/step-XXXXXXXX` atomically and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    tmp = folder / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights, str(tmp / WEIGHTS), metadata={"step": str(step)})
    torch.save(state, tmp / STATE)
    files = {}
    for name in (WEIGHTS, STATE):
        _fsync(tmp / name)
        files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": sha256_of(tmp / name)}
    manifest = {"step": step, "files": files, **meta}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    _fsync(tmp / MANIFEST)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def verify_checkpoint(path: Path) -> dict:
    """The manifest of checkpoint `path`, after checking every file; CheckpointError if not."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (no {MANIFEST}).")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: unreadable {MANIFEST} ({exc}).") from None
    for name, expect in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{path}: {name} is missing.")
        size = file.stat().st_size
        if size != expect["bytes"]:
            raise CheckpointError(
                f"{path}: {name} is truncated or damaged ({size} bytes, expected "
                f"{expect['bytes']}); this checkpoint cannot be used."
            )
        if sha256_of(file) != expect["sha256"]:
            raise CheckpointError(
                f"{path}: {name} is corrupt (checksum mismatch); this checkpoint cannot be used."
            )
    return manifest


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """`(weights, state, manifest)` of a verified checkpoint."""
    path = Path(path)
    manifest = verify_checkpoint(path)
    try:
        weights = load_file(str(path / WEIGHTS))
        state = torch.load(path / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # verified bytes that still do not load
        raise CheckpointError(f"{path}: cannot be loaded ({exc}).") from None
    return weights, state, manifest


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders under `folder`, oldest first (temporary ones excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: p.name)


def latest_valid(folder: Path, log=print) -> Path | None:
    """The newest checkpoint that verifies; corrupt newer ones are reported and skipped
    (left on disk for inspection)."""
    for path in reversed(list_checkpoints(folder)):
        try:
            verify_checkpoint(path)
            return path
        except CheckpointError as exc:
            log(f"warning: skipping {exc}")
    return None


def prune(folder: Path, keep_last: int) -> None:
    """Remove all but the newest `keep_last` checkpoints (`best` lives elsewhere)."""
    checkpoints = list_checkpoints(folder)
    for path in checkpoints[: max(len(checkpoints) - max(keep_last, 1), 0)]:
        shutil.rmtree(path, ignore_errors=True)


def copy_as(path: Path, target: Path) -> None:
    """Atomically replace checkpoint `target` (e.g. `best`) by a copy of `path`."""
    tmp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(path, tmp)
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
