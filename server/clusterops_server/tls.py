"""Checks of the server's TLS files before it starts, so that a bad file is one line that
names the setting, the file and the problem, rather than gRPC's "cannot listen" or a
traceback."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


class TlsFileError(ValueError):
    """A TLS setting whose file cannot serve."""

    def __init__(self, setting: str, path: Path, problem: str) -> None:
        super().__init__(f"{setting} {path}: {problem}")


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsFileError(setting, path, "no such file") from None
    except IsADirectoryError:
        raise TlsFileError(setting, path, "is a directory, not a file") from None
    except OSError as error:
        raise TlsFileError(setting, path, f"cannot read it ({error.strerror})") from None


def _certificates(setting: str, path: Path, now: datetime) -> list[x509.Certificate]:
    data = _read(setting, path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        if b"PRIVATE KEY-----" in data:
            raise TlsFileError(
                setting, path, "holds a private key, not a PEM certificate"
            ) from None
        raise TlsFileError(setting, path, "is not a PEM certificate") from None
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string() or "(no subject)"
        if certificate.not_valid_after_utc < now:
            raise TlsFileError(
                setting,
                path,
                f"certificate {subject} expired on {certificate.not_valid_after_utc:%Y-%m-%d}",
            )
        if certificate.not_valid_before_utc > now:
            raise TlsFileError(
                setting,
                path,
                f"certificate {subject} is not valid before "
                f"{certificate.not_valid_before_utc:%Y-%m-%d}",
            )
    return certificates


def _private_key(setting: str, path: Path) -> PrivateKeyTypes:
    data = _read(setting, path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsFileError(
            setting, path, "the key is encrypted; give an unencrypted PEM private key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if b"-----BEGIN CERTIFICATE-----" in data:
            raise TlsFileError(
                setting, path, "holds a certificate, not a PEM private key"
            ) from None
        raise TlsFileError(setting, path, "is not a PEM private key") from None


def _public(key: object) -> bytes:
    public_key = getattr(key, "public_key", None)
    if public_key is None:
        return b""
    return bytes(
        public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def check_tls_files(cert: Path, key: Path, client_ca: Path | None, now: datetime) -> None:
    """Raise TlsFileError for the first problem found; return if the server can use them."""
    chain = _certificates("--tls-cert", cert, now)
    private_key = _private_key("--tls-key", key)
    if _public(private_key) != _public(chain[0]):
        raise TlsFileError("--tls-key", key, f"does not match the certificate in --tls-cert {cert}")
    if client_ca is None:
        return
    for authority in _certificates("--tls-client-ca", client_ca, now):
        try:
            constraints = authority.extensions.get_extension_for_class(x509.BasicConstraints)
            is_ca = constraints.value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            subject = authority.subject.rfc4514_string() or "(no subject)"
            raise TlsFileError(
                "--tls-client-ca",
                client_ca,
                f"certificate {subject} is not a CA (basicConstraints CA:TRUE is missing)",
            )
