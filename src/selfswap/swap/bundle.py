"""Swap models by name or path, and `selfswap export`: the EMA generator and appearance
encoder of a training run as one fp16 safetensors file, with the training configuration in
the file's metadata (the format: `selfswap.modelfile.exported`).

`"default"` names the model shipped inside the package (`selfswap/weights/default.safetensors`,
model card `default.md`). Training runs and their checkpoint folders load too, so a model can be
tried before it is exported (`selfswap.modelfile.run`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from selfswap.errors import SelfswapError
from selfswap.io.files import check_input_path
from selfswap.modelfile import exported
from selfswap.modelfile.exported import DIGEST_KEY, FORMAT, SUFFIX, packaged, tensor_digest
from selfswap.modelfile.exported import fix_for as _fix
from selfswap.nets.model import ModelConfig, SwapModel

__all__ = [
    "DIGEST_KEY",
    "FORMAT",
    "SUFFIX",
    "_fix",
    "export",
    "load_generator_side",
    "packaged",
    "parameter_count",
    "resolve",
    "tensor_digest",
]


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


def load_generator_side(path: Path) -> tuple[SwapModel, ModelConfig, dict]:
    """`(SwapModel in eval mode, ModelConfig, info)` from an exported model file. Raises
    `ModelFileError` (one sentence that names the fix) for anything unusable."""
    return exported.load(path)


def prepare_runtimes(model: str | Path = "default") -> None:
    """Make the files ONNX Runtime runs from now (`$SELFSWAP_HOME/cache`): the face
    detector's float32 YuNet and `model`'s generator export, so that the first swaps after
    an install run as fast as later ones (`selfswap models pull` calls it)."""
    from selfswap.face.yunet import YuNetOnnx

    YuNetOnnx()
    swap_model, _, _ = load_generator_side(resolve(model))
    swap_model.prepare_frozen()


def export(run: str | Path, out: str | Path, info: dict | None = None) -> Path:
    """Write the EMA generator + appearance encoder of `run` (a run, its best/ or one
    checkpoint folder) as fp16 safetensors at `out`, atomically. Returns `out`. The file's
    configuration is the run's, with the model's sections as they were read (defaults
    filled in)."""
    from selfswap.config import to_dict
    from selfswap.modelfile import run as runs

    model, config, source = runs.load(Path(run))
    settings = {**runs.read_config(runs.locate(Path(run))[0]), **to_dict(config)}
    return exported.write(out, model, settings, {"checkpoint": source.name, **(info or {})})


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
