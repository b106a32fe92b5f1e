"""Runs in the SAM CLI's environment (it has aws-sam-translator): SAM JSON in, CloudFormation out.

Offline: a fixed policy loader answers for the managed policies SAM attaches, so the transform
never calls IAM. Usage: ``.venv-sam/bin/python tests/support/sam_transform.py < sam.json``.
"""

from __future__ import annotations

import json
import os
import sys

from samtranslator.translator.transform import transform

MANAGED = {
    name: f"arn:aws:iam::aws:policy/service-role/{name}"
    for name in ("AWSLambdaBasicExecutionRole", "AWSLambdaSQSQueueExecutionRole")
}


class OfflinePolicyLoader:
    def load(self) -> dict[str, str]:
        return MANAGED


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = json.load(sys.stdin)
    parameters = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    json.dump(transform(template, parameters, OfflinePolicyLoader()), sys.stdout)


if __name__ == "__main__":
    main()
