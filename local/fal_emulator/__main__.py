"""Runs the fal emulator: ``python -m local.fal_emulator --port 8443 --state-dir DIR``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from local.fal_emulator.server import Emulator, serve
from local.fal_emulator.signing import WebhookSigner
from local.fal_emulator.tls import server_context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--user-id", default="local-fal-user")
    parser.add_argument("--fal-key", required=True, help="the only API key the emulator accepts")
    parser.add_argument("--concurrency", type=int, default=2, help="requests run at once")
    args = parser.parse_args()
    args.state_dir.mkdir(parents=True, exist_ok=True)
    context, ca_path = server_context(args.state_dir)
    emulator = Emulator(
        host="127.0.0.1",
        port=args.port,
        signer=WebhookSigner(args.user_id),
        fal_key=args.fal_key,
        concurrency=args.concurrency,
    )
    server = serve(emulator, args.port, context)
    ready = {"url": emulator.base_url, "ca_file": str(ca_path)}
    (args.state_dir / "fal-emulator.json").write_text(json.dumps(ready))
    print(json.dumps({"fal_emulator": ready}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
