"""A throwaway certificate authority, so fal_client's https calls reach the emulator unpatched."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

LOOPBACK_CERT = "loopback-cert-and-key.pem"


def server_context(state_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """An SSL context for the emulator, and the CA file clients should trust (SSL_CERT_FILE)."""
    ca = trustme.CA(organization_name="pika-pipeline local fal emulator")
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = state_dir / "fal-emulator-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    # The same loopback certificate, key included, for the stack's other local https servers
    # (the tests' webhook receivers): the functions trust this CA already.
    certificate.private_key_and_cert_chain_pem.write_to_path(str(state_dir / LOOPBACK_CERT))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    return context, ca_path
