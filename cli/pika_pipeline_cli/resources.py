"""Where a pipeline's resources are: a deployed stack's outputs, or the running local stack's.

Both give the same output names (the template's Outputs), so every command works the same way
against AWS and against the local stack.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

LOCAL_STACK_FILE = Path(".local-stack") / "stack.json"


class CliError(Exception):
    """A problem the user can fix, printed as one line."""


@dataclass(frozen=True)
class Pipeline:
    outputs: dict[str, str]
    session: boto3.session.Session
    endpoint_url: str | None = None
    # How it was found when the user named none: told them first (the file says where AWS is).
    found_implicitly: str | None = None

    def client(self, name: str) -> Any:
        return self.session.client(name, endpoint_url=self.endpoint_url)

    def table(self) -> Any:
        resource = self.session.resource("dynamodb", endpoint_url=self.endpoint_url)
        return resource.Table(self.output("JobsTableName"))

    def output(self, name: str) -> str:
        if name not in self.outputs:
            raise CliError(f"the stack has no output {name!r}; is it a pika-pipeline stack?")
        return self.outputs[name]


def find_pipeline(*, stack: str | None, local_stack_file: Path | None) -> Pipeline:
    if stack:
        return _deployed(stack)
    note = None
    if local_stack_file is None and os.environ.get("PIKA_LOCAL_STACK"):
        local_stack_file = Path(os.environ["PIKA_LOCAL_STACK"])
        note = f"using the local stack in {local_stack_file} (from PIKA_LOCAL_STACK)"
    if local_stack_file is not None:  # named by the user: its absence is the problem to report
        if not local_stack_file.exists():
            raise CliError(
                f"{local_stack_file} does not exist; is the local stack running (`make stack`)?"
            )
        return replace(_local(local_stack_file), found_implicitly=note)
    # Only now, with no stack named in any way: a folder's stack.json decides where AWS is.
    if LOCAL_STACK_FILE.exists():
        note = f"using the local stack in {LOCAL_STACK_FILE.as_posix()} (no --stack given)"
        return replace(_local(LOCAL_STACK_FILE), found_implicitly=note)
    raise CliError(
        "no pipeline given: pass --stack NAME for a deployed stack, or start the local stack "
        "with `make stack`"
    )


def _deployed(name: str) -> Pipeline:
    session = boto3.session.Session()
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationError":
            raise CliError(f"no stack named {name!r} in this account and region") from None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return Pipeline(outputs=outputs, session=session)


def _local(path: Path) -> Pipeline:
    # Converted here, where the only possible cause is the file: a KeyError anywhere else is a bug
    # and should not be dressed up as the user's mistake.
    try:
        info = json.loads(path.read_text())
        environment = info["environment"]  # what the local stack tells its users to export
        session = boto3.session.Session(
            aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
            region_name=environment["AWS_DEFAULT_REGION"],
        )
        return Pipeline(outputs=info["outputs"], session=session, endpoint_url=info["aws_endpoint"])
    except ValueError as exc:  # not JSON, or not even UTF-8 text
        problem = f"not JSON: {exc}"
    except KeyError as exc:
        problem = f"it has no {exc}"
    except TypeError:
        problem = "not a JSON object"
    raise CliError(
        f"{path} is not a local stack's stack.json ({problem}); restart the stack with `make stack`"
    )
