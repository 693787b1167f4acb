"""Checkpoints as the trainer writes them: weights as safetensors plus the full training
state, written atomically.

A checkpoint is a folder `step-00001000/` holding `weights.safetensors` (the generator,
its EMA, the appearance encoder and the discriminator, `net.name` keys), `state.pt`
(optimizers, schedulers, RNG states, step, data position) and, written last,
`manifest.json` with the size and sha256 of both. It is built under a temporary name and
renamed into place, so a crash never leaves a half-written checkpoint under a real name.
The format and its reading (verification, `latest_valid`) are inference's too and live in
`selfswap.modelfile.checkpoint`; this module adds writing, resuming and pruning.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from selfswap.io.files import sha256_of
from selfswap.modelfile.checkpoint import (
    MANIFEST,
    PREFIX,
    STATE,
    WEIGHTS,
    CheckpointError,
    checkpoint_name,
    checkpoint_step,
    latest_valid,
    list_checkpoints,
    load_weights,
    split_weights,
    verify_checkpoint,
)

__all__ = [
    "MANIFEST",
    "PREFIX",
    "STATE",
    "WEIGHTS",
    "CheckpointError",
    "checkpoint_name",
    "checkpoint_step",
    "copy_as",
    "flat_weights",
    "latest_valid",
    "list_checkpoints",
    "load_checkpoint",
    "prune",
    "save_checkpoint",
    "split_weights",
    "verify_checkpoint",
]


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


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """`(weights, state, manifest)` of a verified checkpoint, to resume training from."""
    path = Path(path)
    weights, manifest = load_weights(path)
    try:
        state = torch.load(path / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # verified bytes that still do not load
        raise CheckpointError(f"{path}: cannot be loaded ({exc}).") from None
    return weights, state, manifest


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
