"""The key and certificate that sign selfswap's C2PA manifests.

By default selfswap makes its own on first use, under `$SELFSWAP_HOME/provenance/`:

- `root-ca.pem`: a certificate authority made for this installation alone ("selfswap local
  CA"), self-signed, whose key is discarded once it has issued the signing certificate (C2PA
  refuses a self-signed signing certificate, so the chain has two links);
- `signing-cert.pem` and `signing-key.pem` (readable by the owner only): an ECDSA P-256 key
  (ES256) and its certificate, issued by that CA, with the key usages C2PA requires of a
  claim signer (digitalSignature; extended key usage emailProtection, which c2pa-rs accepts);
- `README.txt`: what these are.

**Such a certificate is on no trust list.** A C2PA reader (`selfswap provenance`, Adobe's
Content Credentials tools) can check that a file is unchanged since it was signed with it and
read what the manifest says, but it cannot tell who signed: anyone can make a certificate with
the same names. Readers show it as "untrusted" or "unknown signer".

To sign with a certificate of your own (from a CA on the C2PA trust list, or your
organisation's): set `SELFSWAP_C2PA_CERT` to a PEM file with the certificate chain (the
signing certificate first, then any intermediates, without the root) and `SELFSWAP_C2PA_KEY`
to its PEM private key (unencrypted). The algorithm follows the key: P-256/384/521 → ES256/
384/512, RSA → PS256, Ed25519 → Ed25519.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from selfswap.errors import SelfswapError
from selfswap.paths import selfswap_home

CERT_ENV = "SELFSWAP_C2PA_CERT"
KEY_ENV = "SELFSWAP_C2PA_KEY"
FOLDER = "provenance"
ROOT_FILE, CERT_FILE, KEY_FILE = "root-ca.pem", "signing-cert.pem", "signing-key.pem"
#: The local certificates' lifetime: files signed before it ends stay valid after.
VALID_DAYS = 10 * 365
ORGANIZATION = "selfswap (local, not on any trust list)"

README = """\
selfswap's signing key for C2PA Content Credentials
==================================================

selfswap signs the C2PA manifest of every image and video it writes with the key in
signing-key.pem. Its certificate (signing-cert.pem) was issued by root-ca.pem, a certificate
authority that selfswap made for this installation alone on {date} (its own key was discarded
once it had issued this one certificate).

This certificate is NOT on any trust list. A C2PA reader can check with it that a file is
unchanged since it was signed and read what its manifest says (made by selfswap, with which
model, from which source and target), but not who signed it: anyone can make a certificate
with the same names. Content Credentials readers show such files as signed by an unknown or
untrusted signer.

Keep signing-key.pem private: whoever has it can sign files as this installation. To sign
with a certificate of your own instead, set SELFSWAP_C2PA_CERT (PEM chain) and
SELFSWAP_C2PA_KEY (PEM key). Deleting this folder makes selfswap create a new key on next use;
files signed with the old one keep their (self-contained) signatures.
"""


class SigningError(SelfswapError):
    """The signing key or certificate cannot be used."""


@dataclass(frozen=True)
class SigningIdentity:
    """A certificate chain (PEM, signing certificate first), its private key (PEM) and the
    C2PA algorithm name; `local`: selfswap's own self-made certificate."""

    chain: bytes
    key: bytes
    alg: str
    local: bool
    serial: str  # of the signing certificate, decimal (as C2PA readers report it)
    subject: str

    @property
    def note(self) -> str:
        if self.local:
            return (
                "signed with this installation's self-made selfswap certificate, which is on "
                "no trust list"
            )
        return f"signed with the certificate set in {CERT_ENV}"


def provenance_folder() -> Path:
    return selfswap_home() / FOLDER


def signing_identity(create: bool = True) -> SigningIdentity | None:
    """The identity that signs manifests: the user's (`SELFSWAP_C2PA_CERT` and
    `SELFSWAP_C2PA_KEY`) when set, else selfswap's local one, created on first use (None
    when it does not exist yet and `create` is False)."""
    cert_path, key_path = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
    if cert_path or key_path:
        if not (cert_path and key_path):
            missing = KEY_ENV if cert_path else CERT_ENV
            raise SigningError(
                f"{CERT_ENV} and {KEY_ENV} go together: set {missing} too, or unset both to "
                "sign with selfswap's own certificate."
            )
        return _load(Path(cert_path).expanduser(), Path(key_path).expanduser(), local=False)
    folder = provenance_folder()
    if not (folder / KEY_FILE).is_file():
        if not create:
            return None
        _create(folder)
    return _load(folder / CERT_FILE, folder / KEY_FILE, local=True)


def _load(cert_path: Path, key_path: Path, local: bool) -> SigningIdentity:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        chain = cert_path.read_bytes()
        key_pem = key_path.read_bytes()
    except OSError as exc:
        raise SigningError(
            f"cannot read the signing certificate or key ({exc.filename}: {exc.strerror})."
        ) from None
    try:
        certs = x509.load_pem_x509_certificates(chain)
    except ValueError:
        raise SigningError(f"{cert_path}: not a PEM certificate chain.") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(
            f"{key_path}: not an unencrypted PEM private key ({str(exc).rstrip('.')})."
        ) from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sizes = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        alg = sizes.get(key.curve.name)
        if alg is None:
            raise SigningError(f"{key_path}: C2PA cannot sign with curve {key.curve.name}.")
    elif isinstance(key, rsa.RSAPrivateKey):
        alg = "ps256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        alg = "ed25519"
    else:
        raise SigningError(f"{key_path}: C2PA cannot sign with a {type(key).__name__}.")
    leaf = certs[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if leaf.public_key().public_bytes(der, public) != key.public_key().public_bytes(der, public):
        raise SigningError(f"{key_path} is not the key of the first certificate in {cert_path}.")
    return SigningIdentity(
        chain=chain,
        key=key_pem,
        alg=alg,
        local=local,
        serial=str(leaf.serial_number),
        subject=leaf.subject.rfc4514_string(),
    )


def _create(folder: Path) -> None:
    """Make the local CA, signing key and certificate in a temporary folder next to `folder`
    and move it into place in one step: of two processes doing this at once, one wins and
    the other uses its files."""
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    except OSError as exc:
        raise SigningError(
            f"cannot create selfswap's signing key in {folder} ({exc.strerror}); make "
            f"$SELFSWAP_HOME writable or set {CERT_ENV} and {KEY_ENV}."
        ) from None
    try:
        for name, data, mode in _new_files():
            path = staging / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        staging.chmod(0o700)
        try:
            os.rename(staging, folder)  # replaces an empty folder, fails on a full one
        except OSError:
            if not (folder / KEY_FILE).is_file():
                raise
    except OSError as exc:
        raise SigningError(
            f"cannot create selfswap's signing key in {folder} ({exc.strerror}); make "
            f"$SELFSWAP_HOME writable or set {CERT_ENV} and {KEY_ENV}."
        ) from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)


def _new_files() -> list[tuple[str, bytes, int]]:
    """`(name, bytes, mode)` of a new local CA, signing key, certificate and README."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=VALID_DAYS)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            ]
        )

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("selfswap local CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("selfswap signer"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    readme = README.format(date=now.date().isoformat()).encode()
    return [
        (ROOT_FILE, ca.public_bytes(pem), 0o644),
        (CERT_FILE, cert.public_bytes(pem), 0o644),
        (KEY_FILE, key_pem, 0o600),
        ("README.txt", readme, 0o644),
    ]
