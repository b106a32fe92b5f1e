"""A throwaway certificate authority, so fal_client's https calls reach the emulator unpatched."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def server_context(state_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """An SSL context for the emulator, and the CA file clients should trust (SSL_CERT_FILE)."""
    ca = trustme.CA(organization_name="pika-pipeline local fal emulator")
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = state_dir / "fal-emulator-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    return context, ca_path
