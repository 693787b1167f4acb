"""Swap models as one file: the EMA generator and appearance encoder of a training run in fp16
safetensors, with the training configuration in the file's metadata.

`"default"` names the model shipped inside the package (`selfswap/weights/default.safetensors`,
model card `default.md`). Training runs and their checkpoint folders load too, so a model can be
tried before it is exported.

Integrity: the metadata key `weights_sha256` holds `tensor_digest` of the tensors (names,
dtypes, shapes and bytes), checked on every load, so flipped bits or overwritten values are
refused with the fix rather than producing garbage. Files exported before the digest existed
load without it (their weights must still be finite).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from selfswap.errors import ModelFileError, SelfswapError
from selfswap.io.files import atomic_write, check_input_path

FORMAT = "selfswap-swap-model/1"
SUFFIX = ".safetensors"
#: Metadata key of the tensors' digest (`tensor_digest`).
DIGEST_KEY = "weights_sha256"


def packaged(name: str) -> Path:
    """Path of a model shipped with the package (`default`)."""
    return Path(str(resources.files("selfswap") / "weights" / f"{name}{SUFFIX}"))


def resolve(model: str | Path) -> Path:
    """A packaged model name, an exported `.safetensors` file, or a run/checkpoint folder."""
    text = str(model)
    check_input_path(text)
    if os.sep not in text and not text.endswith(SUFFIX) and not Path(text).exists():
        path = packaged(text)
        if not path.is_file():
            raise SelfswapError(
                f"Unknown model {text!r}: give 'default', an exported .safetensors file or a "
                "training run folder."
            )
        return path
    path = Path(model)
    if not path.exists():
        raise SelfswapError(f"Model {path} does not exist.")
    return path


def tensor_digest(weights: dict[str, torch.Tensor]) -> str:
    """Hex sha256 over the tensors in name order: each one's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _fix(path: Path) -> str:
    """How to get a good copy of model file `path`."""
    try:
        shipped = path.resolve().parent == packaged("default").resolve().parent
    except (OSError, RuntimeError):
        shipped = False
    if shipped:
        return "reinstall selfswap (pip install --force-reinstall selfswap)"
    return "export it again from its training run with `selfswap export`"


def load_generator_side(path: Path):
    """`(GeneratorSide in eval mode, TrainConfig, metadata)` from an exported model file.
    Raises `ModelFileError` (one sentence that names the fix) for anything unusable."""
    from selfswap.config import from_dict
    from selfswap.train.config import TrainConfig
    from selfswap.train.loop import GeneratorSide

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises several types for damaged files
        raise ModelFileError(
            f"{path} is not a readable model file ({exc.__class__.__name__}); {_fix(path)}."
        ) from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a selfswap swap model (no '{FORMAT}' metadata).")
    expected = meta.get(DIGEST_KEY)
    if expected is not None and tensor_digest(weights) != expected:
        raise ModelFileError(
            f"{path} is corrupt: its weights do not match the checksum stored in it; {_fix(path)}."
        )
    if not all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point()):
        raise ModelFileError(f"{path} holds NaN or infinite weights; {_fix(path)}.")
    try:
        config = from_dict(TrainConfig, json.loads(meta["config"])).validate()
        if config.size < 16:
            raise SelfswapError(f"size {config.size} is below 16 pixels")
    except KeyError:
        raise ModelFileError(f"{path} has no training configuration; {_fix(path)}.") from None
    except (json.JSONDecodeError, SelfswapError) as exc:
        raise ModelFileError(
            f"{path} has a damaged training configuration ({str(exc).rstrip('.')}); {_fix(path)}."
        ) from None
    try:
        model = GeneratorSide(config)
        model.load_state_dict({k: v.float() for k, v in weights.items()})
    except Exception as exc:  # nonsense sizes in the config, foreign or missing tensors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{path} does not hold the swap model its configuration describes "
            f"({first[:200]}); {_fix(path)}."
        ) from None
    try:
        info = json.loads(meta.get("info", "{}"))
    except json.JSONDecodeError:
        info = {}
    return model.eval(), config, info if isinstance(info, dict) else {}


def export(run: str | Path, out: str | Path, info: dict | None = None) -> Path:
    """Write the EMA generator + appearance encoder of `run` (a run, its best/ or one
    checkpoint folder) as fp16 safetensors at `out`, atomically. Returns `out`."""
    from selfswap.config import to_dict
    from selfswap.swap.pipeline import load_run

    model, config, source = load_run(Path(run))
    weights = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "config": json.dumps(to_dict(config)),
        "info": json.dumps({"checkpoint": source.name, **(info or {})}),
        DIGEST_KEY: tensor_digest(weights),
    }
    return atomic_write(out, lambda tmp: save_file(weights, str(tmp), metadata=meta))


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
