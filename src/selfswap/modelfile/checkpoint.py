"""Training checkpoints as they are read: a folder `step-00001000/` holding
`weights.safetensors` (the networks' tensors, `net.name` keys: `gside.`, `ema.`, `disc.`),
`state.pt` (optimizers, schedulers, RNG states, step, data position) and, written last,
`manifest.json` with the size and sha256 of both.

A folder whose files do not match its manifest (truncated, corrupted) is refused with a
`CheckpointError`, and `latest_valid` falls back to the previous one. Writing (atomically,
under a temporary name) is the trainer's: `selfswap.train.checkpoint`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from selfswap.errors import SelfswapError
from selfswap.io.files import sha256_of

WEIGHTS = "weights.safetensors"
STATE = "state.pt"
MANIFEST = "manifest.json"
PREFIX = "step-"


class CheckpointError(SelfswapError):
    """A checkpoint is missing, truncated or corrupt."""


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def checkpoint_step(name: str) -> int | None:
    """The step of checkpoint folder name `name` (`checkpoint_name`'s inverse), or None."""
    digits = name.removeprefix(PREFIX)
    return int(digits) if name.startswith(PREFIX) and digits.isdigit() else None


def split_weights(flat: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The tensors of network `name` (`ema`, say) of a checkpoint, without the prefix."""
    prefix = name + "."
    return {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}


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


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """`(weights, manifest)` of a verified checkpoint; its training state is not read."""
    path = Path(path)
    manifest = verify_checkpoint(path)
    try:
        weights = load_file(str(path / WEIGHTS))
    except Exception as exc:  # verified bytes that still do not load
        raise CheckpointError(f"{path}: cannot be loaded ({exc}).") from None
    return weights, manifest


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
