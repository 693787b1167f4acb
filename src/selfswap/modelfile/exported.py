"""A swap model as one file: the EMA generator and appearance encoder of a training run as
fp16 safetensors, with the training configuration in the file's metadata (`format`,
`config`, `info`, `weights_sha256`). Its model sections build the model (`ModelConfig`); the
rest travels along as a record of the training.

Models shipped inside the package live in `selfswap/weights/` (`packaged`).

Integrity: the metadata key `weights_sha256` holds `tensor_digest` of the tensors (names,
dtypes, shapes and bytes), checked on every load, so flipped bits or overwritten values are
refused with the fix rather than producing garbage. Files exported before the digest existed
load without it (their weights must still be finite).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from selfswap.errors import ModelFileError, SelfswapError
from selfswap.io.files import atomic_write
from selfswap.nets.model import ModelConfig, SwapModel

FORMAT = "selfswap-swap-model/1"
SUFFIX = ".safetensors"
#: Metadata key of the tensors' digest (`tensor_digest`).
DIGEST_KEY = "weights_sha256"


def packaged(name: str) -> Path:
    """Path of a model shipped with the package (`default`)."""
    return Path(str(resources.files("selfswap") / "weights" / f"{name}{SUFFIX}"))


def tensor_digest(weights: dict[str, torch.Tensor]) -> str:
    """Hex sha256 over the tensors in name order: each one's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def fix_for(path: Path) -> str:
    """How to get a good copy of model file `path`."""
    try:
        shipped = path.resolve().parent == packaged("default").resolve().parent
    except (OSError, RuntimeError):
        shipped = False
    if shipped:
        return "reinstall selfswap (pip install --force-reinstall selfswap)"
    return "export it again from its training run with `selfswap export`"


def load(path: Path) -> tuple[SwapModel, ModelConfig, dict]:
    """`(SwapModel in eval mode, ModelConfig, info)` from an exported model file. Raises
    `ModelFileError` (one sentence that names the fix) for anything unusable."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises several types for damaged files
        raise ModelFileError(
            f"{path} is not a readable model file ({exc.__class__.__name__}); {fix_for(path)}."
        ) from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a selfswap swap model (no '{FORMAT}' metadata).")
    expected = meta.get(DIGEST_KEY)
    if expected is not None and tensor_digest(weights) != expected:
        raise ModelFileError(
            f"{path} is corrupt: its weights do not match the checksum stored in it; "
            f"{fix_for(path)}."
        )
    if not all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point()):
        raise ModelFileError(f"{path} holds NaN or infinite weights; {fix_for(path)}.")
    try:
        config = ModelConfig.from_mapping(json.loads(meta["config"]))
        if config.size < 16:
            raise SelfswapError(f"size {config.size} is below 16 pixels")
    except KeyError:
        raise ModelFileError(f"{path} has no training configuration; {fix_for(path)}.") from None
    except (json.JSONDecodeError, SelfswapError) as exc:
        raise ModelFileError(
            f"{path} has a damaged training configuration ({str(exc).rstrip('.')}); "
            f"{fix_for(path)}."
        ) from None
    try:
        model = SwapModel(config)
        model.load_state_dict({k: v.float() for k, v in weights.items()})
    except Exception as exc:  # nonsense sizes in the config, foreign or missing tensors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{path} does not hold the swap model its configuration describes "
            f"({first[:200]}); {fix_for(path)}."
        ) from None
    try:
        info = json.loads(meta.get("info", "{}"))
    except json.JSONDecodeError:
        info = {}
    return model.eval(), config, info if isinstance(info, dict) else {}


def write(out: str | Path, model: SwapModel, config: dict, info: dict) -> Path:
    """Write `model` as fp16 safetensors at `out`, atomically, with the training
    configuration `config` (a mapping holding the model's sections) and `info` in its
    metadata. Returns `out`."""
    weights = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "config": json.dumps(config),
        "info": json.dumps(info),
        DIGEST_KEY: tensor_digest(weights),
    }
    return atomic_write(out, lambda tmp: save_file(weights, str(tmp), metadata=meta))
