"""Where a pipeline's resources are: a deployed stack's outputs, or the running local stack's.

Both give the same output names (the template's Outputs), so every command works the same way
against AWS and against the local stack.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient
from pika_pipeline.aws.errors import error_code

LOCAL_STACK_FILE = Path(".local-stack") / "stack.json"


class CliError(Exception):
    """A problem the user can fix, printed as one line."""


@dataclass(frozen=True)
class FunctionEndpoint:
    """Where a function's Invoke API is: Lambda itself (``url`` None) or the local runtime."""

    name: str
    url: str | None = None


@dataclass(frozen=True)
class Pipeline:
    outputs: dict[str, str]
    session: boto3.session.Session
    endpoint_url: str | None = None
    # The local runtime serves each scheduled function's Invoke API on a port of its own.
    local_functions: dict[str, FunctionEndpoint] | None = None

    def s3(self, *, connections: int = 10) -> S3Client:
        # As many pooled connections as concurrent transfers, or urllib3 discards the extras.
        config = Config(max_pool_connections=connections)
        return self.session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def events(self) -> EventBridgeClient:
        return self.session.client("events", endpoint_url=self.endpoint_url)

    def control_table(self) -> Table:
        resource = self.session.resource("dynamodb", endpoint_url=self.endpoint_url)
        return resource.Table(self.output("ControlTableName"))

    def reconciler(self) -> tuple[LambdaClient, str] | None:
        """The reconciler's Invoke API and function name, if this pipeline says where it is."""
        if self.local_functions is not None:
            local = self.local_functions.get("ReconcilerFunction")
            if local is None:
                return None
            client = self.session.client("lambda", endpoint_url=local.url)
            return client, local.name
        if "ReconcilerFunctionName" not in self.outputs:
            return None
        return self.session.client("lambda"), self.outputs["ReconcilerFunctionName"]

    def sqs(self) -> SQSClient:
        return self.session.client("sqs", endpoint_url=self.endpoint_url)

    def table(self) -> Table:
        resource = self.session.resource("dynamodb", endpoint_url=self.endpoint_url)
        return resource.Table(self.output("JobsTableName"))

    def output(self, name: str) -> str:
        if name not in self.outputs:
            raise CliError(f"the stack has no output {name!r}; is it a pika-pipeline stack?")
        return self.outputs[name]


def find_pipeline(*, stack: str | None, local_stack_file: Path | None) -> Pipeline:
    if stack:
        return _deployed(stack)
    if local_stack_file is None and os.environ.get("PIKA_LOCAL_STACK"):
        local_stack_file = Path(os.environ["PIKA_LOCAL_STACK"])
    if local_stack_file is not None:  # named by the user: its absence is the problem to report
        if not local_stack_file.exists():
            raise CliError(
                f"{local_stack_file} does not exist; is the local stack running (`make stack`)?"
            )
        return _local(local_stack_file)
    if LOCAL_STACK_FILE.exists():
        return _local(LOCAL_STACK_FILE)
    raise CliError(
        "no pipeline given: pass --stack NAME for a deployed stack, or start the local stack "
        "with `make stack`"
    )


def _deployed(name: str) -> Pipeline:
    session = boto3.session.Session()
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if error_code(exc) == "ValidationError":
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
        functions = {
            name: FunctionEndpoint(name=spec["function_name"], url=spec["invoke_url"])
            for name, spec in info.get("functions", {}).items()
            if spec.get("invoke_url")
        }
        return Pipeline(
            outputs=info["outputs"],
            session=session,
            endpoint_url=info["aws_endpoint"],
            local_functions=functions,
        )
    except ValueError as exc:  # not JSON, or not even UTF-8 text
        problem = f"not JSON: {exc}"
    except KeyError as exc:
        problem = f"it has no {exc}"
    except TypeError:
        problem = "not a JSON object"
    raise CliError(
        f"{path} is not a local stack's stack.json ({problem}); restart the stack with `make stack`"
    )
