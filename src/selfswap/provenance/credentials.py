"""C2PA Content Credentials: a signed manifest in every image and video selfswap writes, and
reading one back (the `c2pa-python` package, bindings to the Content Authenticity
Initiative's c2pa-rs).

The manifest (`Claim.definition`) says:

- the claim generator: selfswap and its version;
- one action, `c2pa.created`, with the digital source type `trainedAlgorithmicMedia` (IPTC's
  term for media made by a trained model), the time, selfswap as the software agent, the
  model's name and sha256 and the notice that swaps need the consent of the people shown;
- the ingredients, the source photo(s) and the target, each referenced by its sha256 (of the
  file; of the decoded pixels when selfswap was given pixels, not a file) and its name, never
  embedded (relationship `inputTo`, no thumbnail).

It is signed (`selfswap.provenance.signer`: selfswap's own certificate, on no trust list, or
the user's) and embedded in PNG, JPEG, WebP, MP4 and MOV files; C2PA cannot be embedded in
Matroska (`.mkv`), which keeps the watermark only. The manifest binds the file's bytes by
hash: any change after signing shows as "changed", and a re-save by a program that drops
metadata removes it (the watermark stays).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from selfswap import __version__
from selfswap.errors import SelfswapError
from selfswap.io.files import atomic_write, sha256_of

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR = "selfswap"
#: What C2PA can be embedded in, by file extension.
MIME_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
}
CONSENT = "Swaps require the consent of the people shown."
#: c2pa-rs settings: no thumbnail of the output in the manifest (it would add a copy of the
#: picture), nothing fetched over the network when reading.
_SETTINGS = {
    "builder": {"thumbnail": {"enabled": False}},
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
}


class CredentialsError(SelfswapError):
    """A manifest cannot be made or signed."""


def can_sign(path: str | os.PathLike) -> bool:
    """Whether a C2PA manifest can be embedded in a file with this name."""
    return Path(path).suffix.lower() in MIME_TYPES


def mime_type(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in MIME_TYPES:
        known = ", ".join(sorted(MIME_TYPES))
        raise CredentialsError(f"{path}: C2PA manifests go into {known} files, not '{suffix}'.")
    return MIME_TYPES[suffix]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Ingredient:
    """A file an output was made from, referenced by hash: `role` "source" or "target",
    `title` its name, `sha256` of the file (`hash_of` "file") or of its decoded pixels
    (`hash_of` "pixels": dtype, shape and bytes of the array selfswap was given)."""

    role: str
    title: str
    sha256: str
    hash_of: str = "file"

    @classmethod
    def of(cls, role: str, item) -> Ingredient | None:
        """From a path (the file's sha256) or an image array / PIL image (its pixels'); None
        for anything else (e.g. a precomputed identity)."""
        if isinstance(item, (str, os.PathLike)):
            return cls(role, Path(item).name, sha256_of(item), "file")
        if hasattr(item, "getdata"):  # a PIL image
            item = np.asarray(item)
        if isinstance(item, np.ndarray):
            digest = hashlib.sha256(f"{item.dtype}|{item.shape}\n".encode())
            digest.update(np.ascontiguousarray(item).data)
            return cls(role, f"{role} image (pixels)", digest.hexdigest(), "pixels")
        return None

    def definition(self) -> dict:
        return {
            "title": self.title,
            "relationship": "inputTo",
            "description": (
                f"The {self.role}, referenced by the sha256 of its {self.hash_of}; not embedded."
            ),
            "metadata": {
                "selfswap.role": self.role,
                "selfswap.sha256": self.sha256,
                "selfswap.hash_of": self.hash_of,
            },
        }


def ingredients(sources, target) -> tuple[Ingredient, ...]:
    """The ingredients of a swap: each source (one item or a list: paths, arrays, PIL images)
    and the target; items that are neither files nor pixels are left out."""
    items = sources if isinstance(sources, (list, tuple)) else [sources]
    found = [Ingredient.of("source", s) for s in items] + [Ingredient.of("target", target)]
    return tuple(i for i in found if i is not None)


@dataclass(frozen=True)
class Claim:
    """What the manifest of one output states (see the module's docstring)."""

    model: str | None = None
    model_sha256: str | None = None
    ingredients: tuple[Ingredient, ...] = ()
    created: str = field(default_factory=_now)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> Claim:
        """The claim for an output whose text metadata (`provenance_metadata`) is known: its
        model (with the model's sha256 when the name is one `selfswap` can load) and time."""
        model = metadata.get("selfswap:model")
        digest = metadata.get("selfswap:model_sha256") or (model_digest(model) if model else None)
        return cls(
            model=model, model_sha256=digest, created=metadata.get("selfswap:created") or _now()
        )

    def definition(self, title: str) -> dict:
        """The C2PA manifest definition (c2pa-rs JSON)."""
        parameters = {"notice": CONSENT}
        if self.model:
            parameters["model"] = self.model
        if self.model_sha256:
            parameters["model_sha256"] = self.model_sha256
        action = {
            "action": "c2pa.created",
            "digitalSourceType": DIGITAL_SOURCE_TYPE,
            "when": self.created,
            "softwareAgent": {"name": GENERATOR, "version": __version__},
            "description": (
                "Face swap made by selfswap: a trained model painted the face of the source "
                f"person into the target. {CONSENT}"
            ),
            "parameters": parameters,
        }
        return {
            "claim_generator_info": [{"name": GENERATOR, "version": __version__}],
            "title": title,
            "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [action]}}],
            "ingredients": [i.definition() for i in self.ingredients],
        }


def model_digest(model: str | os.PathLike) -> str | None:
    """The sha256 that names a swap model in manifests: the `weights_sha256` an exported
    model file carries (a digest of its tensors), else the sha256 of the weights file (a
    training run's checkpoint). None when the model cannot be found."""
    from selfswap.swap.bundle import DIGEST_KEY, resolve

    try:
        path = resolve(model)
        if path.is_dir():
            path = _checkpoint_weights(path)
        stat = path.stat()
    except (SelfswapError, OSError, ImportError):
        return None
    return _digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size, DIGEST_KEY)


def _checkpoint_weights(folder: Path) -> Path:
    """The weights file a training run or checkpoint folder is read from."""
    from selfswap.modelfile.checkpoint import WEIGHTS
    from selfswap.modelfile.run import locate

    return locate(folder)[1] / WEIGHTS


@functools.lru_cache(maxsize=16)
def _digest(path: str, mtime_ns: int, size: int, key: str) -> str:
    """`key` from a safetensors file's metadata (read from its header alone), else the
    file's sha256. Cached by path, time and size."""
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if 0 < length < 100_000_000:
                header = json.loads(f.read(length))
                value = (header.get("__metadata__") or {}).get(key)
                if value:
                    return str(value)
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    return sha256_of(path)


def _context():
    import c2pa

    return c2pa.Context.from_dict(_SETTINGS)


def _signer():
    import c2pa

    from selfswap.provenance.signer import signing_identity

    identity = signing_identity()
    try:
        return c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(identity.alg, identity.chain, identity.key, None)
        )
    except c2pa.C2paError as exc:
        raise CredentialsError(f"the signing certificate cannot be used: {exc}") from None


def sign_stream(source, dest, mime: str, claim: Claim, title: str) -> None:
    """Read an image or video from stream `source`, write it with a signed manifest to
    stream `dest` (readable, writable and seekable)."""
    import c2pa

    try:
        builder = c2pa.Builder(claim.definition(title), context=_context())
        builder.sign(_signer(), mime, source, dest)
    except c2pa.C2paError as exc:
        raise CredentialsError(f"could not sign the C2PA manifest of {title}: {exc}") from None


def sign_bytes(data: bytes, mime: str, claim: Claim, title: str) -> bytes:
    """An encoded image with a signed manifest."""
    out = io.BytesIO()
    sign_stream(io.BytesIO(data), out, mime, claim, title)
    return out.getvalue()


def sign_file(
    source: str | os.PathLike, dest: str | os.PathLike, claim: Claim, title: str | None = None
) -> Path:
    """Copy file `source` to `dest` with a signed manifest; `dest` appears only complete
    (`atomic_write`). Its extension says the format."""
    mime = mime_type(dest)

    def write(tmp: Path) -> None:
        with open(source, "rb") as src, open(tmp, "w+b") as out:
            sign_stream(src, out, mime, claim, title or Path(dest).name)

    return atomic_write(dest, write)


@contextlib.contextmanager
def signed_output(path: str | os.PathLike, claim: Claim) -> Iterator[Path]:
    """For a writer that writes a whole file at once (the video writer): yields a hidden
    sibling of `path` to write to; when the block ends without an error, the file is copied
    with a signed manifest onto `path` (atomically) and the sibling removed, so `path` never
    exists unsigned. For a format that cannot carry a manifest (`can_sign`), yields `path`
    itself."""
    path = Path(path)
    if not can_sign(path):
        yield path
        return
    # the video writer's own part-file pattern (`.STEM.HEX.partSUFFIX`): a leftover of a
    # killed run is cleaned up with the others
    part = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.part{path.suffix}")
    try:
        yield part
        sign_file(part, path, claim, title=path.name)
    finally:
        part.unlink(missing_ok=True)


# -- reading --------------------------------------------------------------------------------

#: Failure codes that mean the file's bytes changed after signing.
_CHANGED = ("assertion.dataHash.mismatch", "assertion.bmffHash.mismatch",
            "assertion.boxesHash.mismatch", "assertion.collectionHash.mismatch")  # fmt: skip
#: Codes that only say the certificate is on no trust list (expected for selfswap's own).
_UNTRUSTED = ("signingCredential.untrusted",)


@dataclass(frozen=True)
class Credentials:
    """What `read_credentials` found in a file.

    `state`: "valid" (signed, unchanged since), "changed" (signed, but the file's content no
    longer matches the signed hash: edited after signing), "invalid" (the signature or the
    manifest is broken), "missing" (no manifest: never signed, or stripped by a re-save),
    "unsupported" (a format that cannot carry one) or "unreadable"."""

    state: str
    generator: str | None = None
    by_selfswap: bool = False
    synthetic: bool = False  # the manifest says a trained algorithm made the content
    model: str | None = None
    model_sha256: str | None = None
    created: str | None = None
    ingredients: tuple[dict, ...] = ()
    signer: str | None = None
    this_installation: bool = False  # signed with this installation's signing identity
    trusted: bool = False  # the signer chains to a trust anchor c2pa-rs knows
    problems: tuple[str, ...] = ()

    @property
    def present(self) -> bool:
        return self.state in ("valid", "changed", "invalid")

    def lines(self) -> list[str]:
        """Human-readable lines, the first one the verdict."""
        if self.state == "missing":
            return ["no C2PA manifest (never signed, or removed by a re-save)"]
        if self.state == "unsupported":
            return ["no C2PA manifest (this format cannot carry one)"]
        if self.state == "unreadable":
            return [f"C2PA manifest unreadable ({'; '.join(self.problems)})"]
        verdict = {
            "valid": "valid: the file is unchanged since it was signed",
            "changed": "CHANGED after signing: the content no longer matches the signed hash",
            "invalid": "INVALID signature or manifest",
        }[self.state]
        made = f"made by {self.generator or 'an unknown generator'}"
        if self.model:
            sha = f" (sha256 {self.model_sha256[:16]}…)" if self.model_sha256 else ""
            made += f" with model {self.model}{sha}"
        if self.created:
            made += f", {self.created}"
        lines = [f"C2PA manifest {verdict}", made]
        if self.synthetic:
            lines.append("digital source type: trainedAlgorithmicMedia (made by a trained model)")
        for item in self.ingredients:
            lines.append(f"{item['role']}: {item['title']}, sha256 {item['sha256']} (not embedded)")
        if self.trusted:
            trust = "its certificate is on a trust list"
        else:
            trust = (
                "its certificate is on no trust list: the signature shows the file is unchanged "
                "since signing, not who signed it"
            )
        mine = " (this installation's key)" if self.this_installation else ""
        lines.append(f"signer: {self.signer or 'unknown'}{mine}; {trust}")
        lines += [f"problem: {p}" for p in self.problems]
        return lines


def read_credentials(path: str | os.PathLike) -> Credentials:
    """Read and validate the C2PA manifest of an image or video file."""
    import c2pa

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MIME_TYPES:
        return Credentials("unsupported")
    try:
        with open(path, "rb") as f:
            reader = c2pa.Reader.try_create(MIME_TYPES[suffix], f, None, _context())
            if reader is None:
                return Credentials("missing")
            with reader:
                manifest = reader.get_active_manifest() or {}
                state = reader.get_validation_state() or ""
                results = reader.get_validation_results() or {}
    except c2pa.C2paError as exc:
        return Credentials("unreadable", problems=(_first_line(exc),))
    except OSError as exc:
        return Credentials("unreadable", problems=(exc.strerror or str(exc),))
    return _summarise(manifest, state, results)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _summarise(manifest: dict, state: str, results: dict) -> Credentials:
    active = results.get("activeManifest") or {}
    failures = [f for f in active.get("failure", []) if f.get("code") not in _UNTRUSTED]
    codes = {f.get("code") for f in failures}
    if state.lower() == "trusted" or (state.lower() == "valid" and not failures):
        verdict = "valid"
    elif codes and codes <= set(_CHANGED):
        verdict = "changed"
    else:
        verdict = "invalid"
    generators = manifest.get("claim_generator_info") or []
    generator = None
    if generators:
        first = generators[0]
        generator = " ".join(str(first.get(k)) for k in ("name", "version") if first.get(k))
    by_selfswap = any(g.get("name") == GENERATOR for g in generators)
    synthetic, model, model_sha, created = False, None, None, None
    for assertion in manifest.get("assertions", []):
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions", []):
            if action.get("action") != "c2pa.created":
                continue
            synthetic = action.get("digitalSourceType") == DIGITAL_SOURCE_TYPE
            created = action.get("when")
            parameters = action.get("parameters") or {}
            model, model_sha = parameters.get("model"), parameters.get("model_sha256")
    ingredients = []
    for item in manifest.get("ingredients", []):
        meta = item.get("metadata") or {}
        ingredients.append(
            {
                "role": meta.get("selfswap.role", item.get("relationship", "ingredient")),
                "title": item.get("title", "?"),
                "sha256": meta.get("selfswap.sha256", "not given"),
            }
        )
    info = manifest.get("signature_info") or {}
    signer = ", ".join(str(info[k]) for k in ("common_name", "issuer") if info.get(k)) or None
    return Credentials(
        state=verdict,
        generator=generator,
        by_selfswap=by_selfswap,
        synthetic=synthetic,
        model=model,
        model_sha256=model_sha,
        created=created,
        ingredients=tuple(ingredients),
        signer=signer,
        this_installation=_is_ours(info.get("cert_serial_number")),
        trusted=state.lower() == "trusted",
        problems=tuple(f"{f.get('code')}: {f.get('explanation', '')}".strip() for f in failures),
    )


def _is_ours(serial) -> bool:
    """Whether a signing certificate's serial number is that of this installation's signing
    identity (never creates one)."""
    if serial is None:
        return False
    from selfswap.provenance.signer import signing_identity

    try:
        identity = signing_identity(create=False)
    except SelfswapError:
        return False
    return identity is not None and identity.serial == str(serial)


def manifest_json(path: str | os.PathLike) -> str | None:
    """The full manifest store of a file as c2pa-rs reports it (JSON), or None."""
    import c2pa

    with open(path, "rb") as f:
        reader = c2pa.Reader.try_create(mime_type(path), f, None, _context())
        if reader is None:
            return None
        with reader:
            return json.dumps(json.loads(reader.json()), indent=2)
