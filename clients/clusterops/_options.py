"""Connection and per-call options."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from clusterops._retry import RetryPolicy

DEFAULT_TARGET = "localhost:50051"
ENV_SERVER = "CLUSTEROPS_SERVER"
ENV_TOKEN = "CLUSTEROPS_TOKEN"
ENV_TLS = "CLUSTEROPS_TLS"
ENV_CA_CERT = "CLUSTEROPS_CA_CERT"
ENV_CLIENT_CERT = "CLUSTEROPS_CLIENT_CERT"
ENV_CLIENT_KEY = "CLUSTEROPS_CLIENT_KEY"

Metadata = Sequence[tuple[str, str]]


class Default(enum.Enum):
    """The type of `DEFAULT`: "use the client's setting"."""

    DEFAULT = "DEFAULT"


DEFAULT = Default.DEFAULT
"""Passed as `timeout` or `retry`, means the client's default (the parameters' default)."""

Timeout = float | None | Default
"""Seconds; None waits without a deadline; DEFAULT takes the client's default deadline."""
Retry = RetryPolicy | None | Default
"""A policy; None never retries; DEFAULT takes the client's policy."""


@dataclass(frozen=True)
class CallOptions:
    timeout: Timeout = DEFAULT
    metadata: Metadata = ()
    retry: Retry = DEFAULT


@dataclass(frozen=True)
class TLSConfig:
    """TLS to the server: trusted roots (None: the system's), and a client key pair for mTLS."""

    root_certificates: bytes | None = None
    client_certificate: bytes | None = None
    client_key: bytes | None = None
    # The name to check the server's certificate against, when it differs from the target.
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("mutual TLS needs both client_certificate and client_key")

    @classmethod
    def from_files(
        cls,
        *,
        ca_cert: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        server_name: str | None = None,
    ) -> TLSConfig:
        """Read PEM files; any left out is not used."""

        def read(path: str | Path | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return cls(read(ca_cert), read(client_cert), read(client_key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.client_key,
            certificate_chain=self.client_certificate,
        )


def tls_from_env(environ: Mapping[str, str] | None = None) -> TLSConfig | None:
    """TLS as CLUSTEROPS_TLS / CLUSTEROPS_CA_CERT / CLUSTEROPS_CLIENT_CERT / _KEY say."""
    env = os.environ if environ is None else environ
    files = {
        "ca_cert": env.get(ENV_CA_CERT) or None,
        "client_cert": env.get(ENV_CLIENT_CERT) or None,
        "client_key": env.get(ENV_CLIENT_KEY) or None,
    }
    wanted = env.get(ENV_TLS, "").lower() in {"1", "true", "yes"}
    if not wanted and not any(files.values()):
        return None
    return TLSConfig.from_files(**files)
