"""A smoke deployment: SAM's own transform of template.yaml, created in moto's CloudFormation.

Proves the resources and the wiring between them resolve (names, ARNs, environment, event source
mapping, rule target). What moto's CloudFormation cannot create is listed and stripped here.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from local.aws import REGION, MotoServer, free_port
from local.template import REPO_ROOT, load_template

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

SAM_PYTHON = REPO_ROOT / ".venv-sam" / "bin" / "python"
TRANSFORM = REPO_ROOT / "tests" / "support" / "sam_transform.py"
# moto's CloudFormation has no support for these; each is replaced by a placeholder or dropped.
NOT_IN_MOTO = {
    "AWS::Lambda::Url": "https://placeholder.lambda-url.us-east-1.on.aws/",
    "AWS::SecretsManager::Secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:token",
}
DROPPED_TYPES = {"AWS::Lambda::Permission", "AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy"}

pytestmark = [
    pytest.mark.skipif(
        not SAM_PYTHON.exists(), reason="needs the SAM CLI environment that `make test` installs"
    ),
    pytest.mark.stack,  # a moto server of its own
]


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server of its own: the smoke deployment's rules (a copy of the pipeline's, which
    listen to its events) must not land in the session stack's EventBridge."""
    server = MotoServer(free_port(), tmp_path_factory.mktemp("smoke-moto") / "moto.log")
    server.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


def _clients(endpoint: str) -> dict[str, Any]:
    session = boto3.session.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION
    )
    return {
        "s3": session.client("s3", endpoint_url=endpoint),
        "cloudformation": session.client("cloudformation", endpoint_url=endpoint),
        "lambda": session.client("lambda", endpoint_url=endpoint),
        "events": session.client("events", endpoint_url=endpoint),
    }


def _packaged(s3: S3Client) -> dict[str, Any]:
    """template.yaml with its code as zips in (moto) S3, as `sam package` leaves it."""
    bucket = f"sam-artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    template = copy.deepcopy(load_template())
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for field in ("CodeUri", "ContentUri"):
            if field in properties:
                s3.put_object(
                    Bucket=bucket, Key=f"{name}.zip", Body=_zip(REPO_ROOT / properties[field])
                )
                properties[field] = f"s3://{bucket}/{name}.zip"
    return template


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.rglob("*.py"):
            archive.write(path, path.relative_to(folder))
    return buffer.getvalue()


def _transformed(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [str(SAM_PYTHON), str(TRANSFORM), json.dumps(parameters)],
        input=json.dumps(template),
        capture_output=True,
        text=True,
        check=True,
    )
    transformed: dict[str, Any] = json.loads(result.stdout)
    return transformed


def _strip_unsupported(template: dict[str, Any]) -> list[str]:
    resources = template["Resources"]
    stripped = [
        f"{name} ({resource['Type']})"
        for name, resource in resources.items()
        if resource["Type"] in NOT_IN_MOTO or resource["Type"] in DROPPED_TYPES
    ]
    placeholders = {
        name: NOT_IN_MOTO[resource["Type"]]
        for name, resource in resources.items()
        if resource["Type"] in NOT_IN_MOTO
    }
    for name in [n.split(" ")[0] for n in stripped]:
        del resources[name]

    def replace(value: Any) -> Any:
        if isinstance(value, dict):
            if value.keys() == {"Ref"} and value["Ref"] in placeholders:
                return placeholders[value["Ref"]]
            if value.keys() == {"Fn::GetAtt"} and value["Fn::GetAtt"][0] in placeholders:
                return placeholders[value["Fn::GetAtt"][0]]
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        return value

    template["Resources"] = replace(resources)
    template["Outputs"] = replace(template.get("Outputs", {}))
    for resource in template["Resources"].values():
        resource.pop("DependsOn", None)  # may name a stripped resource
    return stripped


# The parameters without a default, as `sam deploy --guided` would ask for them.
REQUIRED = {"FalUserId": "github|1234567"}


def _deploy(endpoint: str, parameters: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    parameters = {**REQUIRED, **parameters}
    clients = _clients(endpoint)
    template = _transformed(_packaged(clients["s3"]), parameters)
    stripped = _strip_unsupported(template)
    assert stripped  # what moto could not create, listed for the reader of a failure
    name = f"pika-smoke-{uuid.uuid4().hex[:6]}"
    clients["cloudformation"].create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    described = clients["cloudformation"].describe_stacks(StackName=name)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in clients["cloudformation"].describe_stack_resources(StackName=name)[
            "StackResources"
        ]
        if "LogicalResourceId" in r  # moto lists its CloudWatch alarms without ids
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return clients | {"physical": physical, "template": template}, outputs


def test_the_template_deploys_with_its_wiring_resolved(moto_endpoint: str) -> None:
    clients, outputs = _deploy(moto_endpoint, {})
    physical = clients["physical"]

    for logical in ("InputBucket", "OutputBucket", "JobsTable", "SubmitQueue", "SubmitFunction"):
        assert logical in physical
    submit = clients["lambda"].get_function_configuration(FunctionName=physical["SubmitFunction"])
    assert submit["Runtime"] == "python3.13"
    # moto's CloudFormation ignores Architectures, so read it from SAM's transform.
    functions = clients["template"]["Resources"]
    assert functions["SubmitFunction"]["Properties"]["Architectures"] == ["arm64"]
    assert functions["WebhookFunction"]["Properties"]["Architectures"] == ["arm64"]
    # SAM made no roles of its own, so no AWS-managed policy (their resources are "*").
    roles = [r for r in functions.values() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == len(
        [r for r in functions.values() if r["Type"] == "AWS::Lambda::Function"]
    )
    assert not [r for r in roles if r["Properties"].get("ManagedPolicyArns")]
    environment = submit["Environment"]["Variables"]
    assert environment["JOBS_TABLE"] == physical["JobsTable"] == outputs["JobsTableName"]
    assert environment["OUTPUT_BUCKET"] == physical["OutputBucket"]
    (mapping,) = clients["lambda"].list_event_source_mappings(
        FunctionName=physical["SubmitFunction"]
    )["EventSourceMappings"]
    assert mapping["EventSourceArn"].endswith(physical["SubmitQueue"].rsplit("/", 1)[1])
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert outputs["InputBucketName"] == physical["InputBucket"]


def test_an_existing_input_bucket_replaces_the_created_one(moto_endpoint: str) -> None:
    clients, outputs = _deploy(moto_endpoint, {"ExistingInputBucketName": "my-photos"})
    physical = clients["physical"]

    assert "InputBucket" not in physical
    assert outputs["InputBucketName"] == "my-photos"
    rule = clients["events"].describe_rule(Name=physical["UploadRule"].split("|")[-1])
    assert json.loads(rule["EventPattern"])["detail"]["bucket"]["name"] == ["my-photos"]
