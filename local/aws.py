"""The AWS side of the local stack: moto in server mode, holding the template's resources.

Everything goes through boto3 over HTTP, exactly as the functions and a user's tools will.
Resource types moto cannot emulate usefully (bucket and queue policies, layers, the functions
themselves) are listed in ``NOT_EMULATED``; the Lambda runtime stands in for the functions.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from local.template import REPO_ROOT, Resolver, is_created

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_logs.client import CloudWatchLogsClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_sns.client import SNSClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

# The local stack's AWS identity (what the template's pseudo parameters resolve to): the one
# definition local/, the benchmarks and the tests read.
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
STACK_NAME = "pika-local"
# moto accepts any credentials; these make the local stack's identity obvious in logs.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}

NOT_EMULATED = (
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Subscription",
    "AWS::CloudWatch::Alarm",
    "AWS::Serverless::LayerVersion",
    "AWS::Serverless::Function",
)


def aws_environment(endpoint: str) -> dict[str, str]:
    """What any boto3 or aws-cli process needs to talk to the local stack."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        **CREDENTIALS,
    }


class MotoServer:
    """moto's server in its own process, on a loopback port (see local/moto_server.py)."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self._log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local.moto_server", "127.0.0.1", str(self.port)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited; see {self._log_path}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto server did not start in 30 s; see {self._log_path}")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()


@dataclass
class ProvisionedStack:
    """Logical id -> physical name, and the attributes other resources referred to."""

    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def provision(resolver: Resolver, endpoint: str) -> ProvisionedStack:
    """Creates every resource the template declares that moto emulates, in dependency order."""
    session = boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )

    secretsmanager = session.client("secretsmanager", endpoint_url=endpoint)
    s3 = session.client("s3", endpoint_url=endpoint)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    events = session.client("events", endpoint_url=endpoint)
    logs = session.client("logs", endpoint_url=endpoint)
    sns = session.client("sns", endpoint_url=endpoint)
    kms = session.client("kms", endpoint_url=endpoint)
    creators = {
        "AWS::SecretsManager::Secret": lambda lid, p: _secret(secretsmanager, lid, p),
        "AWS::S3::Bucket": lambda lid, p: _bucket(s3, lid, p),
        "AWS::DynamoDB::Table": lambda lid, p: _table(dynamodb, lid, p),
        "AWS::SQS::Queue": lambda lid, p: _queue(sqs, lid, p),
        "AWS::Events::Rule": lambda lid, p: _rule(events, lid, p, resolver),
        "AWS::Logs::LogGroup": lambda lid, p: _log_group(logs, lid, p),
        "AWS::SNS::Topic": lambda lid, p: _topic(sns, lid, p),
        "AWS::KMS::Key": lambda lid, p: _key(kms, lid, p),
    }
    stack = ProvisionedStack()
    pending = dict(resolver.template["Resources"])
    while pending:
        progressed = False
        for logical, resource in list(pending.items()):
            kind = resource["Type"]
            if not is_created(resolver, resource):
                del pending[logical]
                continue
            if kind not in creators:
                stack.skipped.append(f"{logical} ({kind})")
                del pending[logical]
                continue
            try:
                properties = resolver.resolve(resource.get("Properties", {}))
            except KeyError:
                continue  # refers to something not created yet
            ref, attributes = creators[kind](logical, properties)
            resolver.refs[logical] = ref
            stack.refs[logical] = ref
            for attribute, value in attributes.items():
                resolver.attributes[(logical, attribute)] = value
                stack.attributes[(logical, attribute)] = value
            del pending[logical]
            progressed = True
        if pending and not progressed:
            raise RuntimeError(f"cannot resolve references of {sorted(pending)}")
    return stack


def physical_name(logical: str) -> str:
    return f"{STACK_NAME}-{logical}".lower()


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{resource}"


def _secret(
    sm: SecretsManagerClient, logical: str, props: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    generate = props.get("GenerateSecretString", {})
    value = secrets.token_hex(max(16, int(generate.get("PasswordLength", 32)) // 2))
    if "GenerateStringKey" in generate:  # as Secrets Manager does: the value under that key
        document = json.loads(generate.get("SecretStringTemplate") or "{}")
        value = json.dumps({**document, generate["GenerateStringKey"]: value})
    arn = sm.create_secret(Name=physical_name(logical), SecretString=value)["ARN"]
    return arn, {"Id": arn}


def _bucket(s3: S3Client, logical: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    name = physical_name(logical)
    s3.create_bucket(Bucket=name)
    if props.get("VersioningConfiguration"):
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration=props["VersioningConfiguration"]
        )
    notification = props.get("NotificationConfiguration", {})
    if notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    if props.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"],
        )
    return name, {"Arn": f"arn:aws:s3:::{name}"}


def _table(ddb: DynamoDBClient, logical: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    name = physical_name(logical)
    arguments: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        arguments["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    ddb.create_table(**arguments)
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return name, {"Arn": _arn("dynamodb", f"table/{name}")}


def _queue(sqs: SQSClient, logical: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    name = physical_name(logical)
    copied: tuple[QueueAttributeNameType, ...] = (
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
    )
    attributes = {key: str(props[key]) for key in copied if key in props}
    if "RedrivePolicy" in props:
        attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, {"Arn": _arn("sqs", name), "QueueName": name, "QueueUrl": url}


def _rule(
    events: EventBridgeClient, logical: str, props: dict[str, Any], resolver: Resolver
) -> tuple[str, dict[str, str]]:
    name = physical_name(logical)
    # As in AWS: a rule listens on the bus it names, else on the default bus.
    bus = str(props.get("EventBusName", "default"))
    arn = events.put_rule(
        Name=name,
        EventBusName=bus,
        EventPattern=json.dumps(props["EventPattern"]),
        State="ENABLED",
    )["RuleArn"]
    events.put_targets(
        Rule=name,
        EventBusName=bus,
        Targets=[{"Id": t["Id"], "Arn": t["Arn"]} for t in props.get("Targets", [])],
    )
    return name, {"Arn": arn}


def _key(kms: KMSClient, logical: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    metadata = kms.create_key(
        Description=props.get("Description", logical), Policy=json.dumps(props["KeyPolicy"])
    )["KeyMetadata"]
    return str(metadata["KeyId"]), {"Arn": str(metadata["Arn"]), "KeyId": str(metadata["KeyId"])}


def _topic(sns: SNSClient, logical: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    attributes = {"KmsMasterKeyId": props["KmsMasterKeyId"]} if "KmsMasterKeyId" in props else {}
    arn: str = sns.create_topic(Name=physical_name(logical), Attributes=attributes)["TopicArn"]
    return arn, {"TopicName": physical_name(logical)}


def _log_group(
    logs: CloudWatchLogsClient, logical: str, props: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    name = f"/aws/lambda/{physical_name(logical)}"
    logs.create_log_group(logGroupName=name)
    if "RetentionInDays" in props:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    return name, {"Arn": _arn("logs", f"log-group:{name}")}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_environment(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment minus anything AWS- or fal-related, plus ``extra``."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "FAL_", "POWERTOOLS_")) and key != "SSL_CERT_FILE"
    }
    return {**base, **extra}
