"""What a security review of template.yaml checks: least privilege, locked-down data, and sizing
that keeps retries and redeliveries from overlapping."""

from __future__ import annotations

from typing import Any

import pytest

from local.template import load_template, parameter_defaults
from pika_pipeline.jobs.events import SOURCE

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
DEFAULTS = parameter_defaults(TEMPLATE)
FUNCTIONS = sorted(n for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function")
BUCKETS = sorted(n for n, r in RESOURCES.items() if r["Type"] == "AWS::S3::Bucket")


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_has_a_role_of_its_own_and_no_managed_policies(function: str) -> None:
    properties = RESOURCES[function]["Properties"]
    # With Role set, SAM attaches nothing (its default role would add managed policies on "*").
    assert "Policies" not in properties
    role_name = properties["Role"]["Fn::GetAtt"][0]
    assert RESOURCES[role_name]["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in RESOURCES[role_name]["Properties"]
    others = [RESOURCES[f]["Properties"]["Role"]["Fn::GetAtt"][0] for f in FUNCTIONS]
    assert others.count(role_name) == 1


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_role_grants_any_action_on_every_resource(function: str) -> None:
    role = RESOURCES[RESOURCES[function]["Properties"]["Role"]["Fn::GetAtt"][0]]
    statements = _statements(role)
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "*" not in _as_list(statement["Resource"]), statement["Sid"]
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{statement['Sid']}: {action}"
    (logs,) = [s for s in statements if s["Sid"] == "Logs"]
    log_group = RESOURCES[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert logs["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}
    assert "RetentionInDays" in RESOURCES[log_group]["Properties"]


def test_only_the_webhook_and_reconciler_write_videos_and_only_under_the_output_prefix() -> None:
    writers = {}
    for function in FUNCTIONS:
        role = RESOURCES[RESOURCES[function]["Properties"]["Role"]["Fn::GetAtt"][0]]
        for statement in _statements(role):
            if "s3:PutObject" in _as_list(statement["Action"]):
                writers[function] = statement["Resource"]
    assert set(writers) == {"WebhookFunction", "ReconcilerFunction"}
    assert all(
        resource == {"Fn::Sub": "${OutputBucket.Arn}/videos/*"} for resource in writers.values()
    )


@pytest.mark.parametrize("bucket", BUCKETS)
def test_buckets_are_private_encrypted_tls_only_and_clean_up_failed_uploads(bucket: str) -> None:
    properties = RESOURCES[bucket]["Properties"]
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
    rules = properties["LifecycleConfiguration"]["Rules"]
    assert any(
        rule["Status"] == "Enabled" and "AbortIncompleteMultipartUpload" in rule for rule in rules
    )
    (policy,) = [
        r
        for r in RESOURCES.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Action"]) == ("Deny", "s3:*")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_input_bucket_is_versioned_so_each_upload_is_its_own_job() -> None:
    assert RESOURCES["InputBucket"]["Properties"]["VersioningConfiguration"] == {
        "Status": "Enabled"
    }


def test_the_jobs_table_is_on_demand_recoverable_encrypted_and_expires_records() -> None:
    properties = RESOURCES["JobsTable"]["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"]["SSEEnabled"] is True
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at",
        "Enabled": True,
    }


def test_the_submit_timeout_outlasts_fal_clients_retries_and_the_queue_outlasts_six_of_them() -> (
    None
):
    timeout = RESOURCES["SubmitFunction"]["Properties"]["Timeout"]
    # fal_client: 10 attempts of at most FalTimeoutSeconds each, plus its backoff (about 72 s).
    retry_budget = 10 * int(TEMPLATE["Parameters"]["FalTimeoutSeconds"]["MaxValue"]) + 72
    assert timeout > retry_budget
    visibility = int(DEFAULTS["SubmitQueueVisibilitySeconds"])
    assert visibility >= 6 * timeout


def test_the_submit_event_source_is_capped_by_the_concurrency_parameter() -> None:
    uploads = RESOURCES["SubmitFunction"]["Properties"]["Events"]["Uploads"]["Properties"]
    assert uploads["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "SubmitMaxConcurrency"}}
    assert uploads["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_public_webhook_url_is_open_but_its_concurrency_is_capped() -> None:
    properties = RESOURCES["WebhookFunction"]["Properties"]
    assert properties["FunctionUrlConfig"]["AuthType"] == "NONE"  # fal cannot sign with IAM
    reserved = properties["ReservedConcurrentExecutions"]["Fn::If"]
    assert reserved[1] == {"Ref": "WebhookReservedConcurrency"}
    assert int(DEFAULTS["WebhookReservedConcurrency"]) > 0


# --- issue 15: alarms that can notify, a pinned fal user, narrow hosts and events -------------


def _alarm_topic_publishers() -> set[str]:
    """The service principals that publish to AlarmTopic: CloudWatch for every alarm action,
    EventBridge for any rule that targets the topic."""
    publishers = set()
    for resource in RESOURCES.values():
        properties = resource.get("Properties", {})
        actions = [
            *properties.get("AlarmActions", []),
            *properties.get("OKActions", []),
            *properties.get("InsufficientDataActions", []),
        ]
        if resource["Type"] == "AWS::CloudWatch::Alarm" and {"Ref": "AlarmTopic"} in actions:
            publishers.add("cloudwatch.amazonaws.com")
        if resource["Type"] == "AWS::Events::Rule" and any(
            target["Arn"] == {"Ref": "AlarmTopic"} for target in properties.get("Targets", [])
        ):
            publishers.add("events.amazonaws.com")
    return publishers


def test_every_publisher_of_the_alarm_topic_may_use_its_encryption_key() -> None:
    # AWS's managed alias/aws/sns key cannot grant CloudWatch: its alarms would fire silently.
    key_id = RESOURCES["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    assert key_id == {"Ref": "AlarmTopicKey"}
    key = RESOURCES["AlarmTopicKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    publishers = _alarm_topic_publishers()
    assert "cloudwatch.amazonaws.com" in publishers

    for publisher in publishers:
        (grant,) = [s for s in statements if s["Principal"] == {"Service": publisher}]
        assert grant["Effect"] == "Allow"
        assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(_as_list(grant["Action"]))
        # Only on behalf of this account's own alarms (or rules), not anyone else's.
        conditions = grant["Condition"]
        assert conditions["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        source_arn = conditions["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
        assert "${AWS::AccountId}" in source_arn


def test_no_service_but_the_topics_publishers_is_granted_the_alarm_key() -> None:
    statements = RESOURCES["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    services = {
        s["Principal"]["Service"] for s in statements if "Service" in s.get("Principal", {})
    }
    assert services == _alarm_topic_publishers()


def test_the_fal_user_id_is_required() -> None:
    # Without it any fal account's signature would be accepted (docs/SECURITY.md).
    parameter = TEMPLATE["Parameters"]["FalUserId"]
    assert "Default" not in parameter
    assert parameter["MinLength"] == 1


def test_videos_are_downloaded_only_from_fals_media_hosts_by_default() -> None:
    hosts = DEFAULTS["MediaHosts"].split(",")
    # storage.googleapis.com serves anyone's files; the legacy fal.media CDN is retired.
    assert hosts == ["v3.fal.media", "v3b.fal.media"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_publish_only_pika_pipeline_events_to_the_configured_bus(function: str) -> None:
    role = RESOURCES[RESOURCES[function]["Properties"]["Role"]["Fn::GetAtt"][0]]
    grants = [s for s in _statements(role) if "events:PutEvents" in _as_list(s["Action"])]

    # The three that finish jobs announce them; the notifier only reads what they announced.
    assert len(grants) == (0 if function == "NotifierFunction" else 1)
    for grant in grants:
        assert grant["Resource"]["Fn::Sub"].endswith(":event-bus/${EventBusName}")
        assert grant["Condition"] == {"StringEquals": {"events:source": SOURCE}}


def test_completion_events_go_to_the_bus_the_parameter_names() -> None:
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["EVENT_BUS_NAME"] == {"Ref": "EventBusName"}
    assert DEFAULTS["EventBusName"] == "default"
    assert TEMPLATE["Outputs"]["CompletionEventBus"]["Value"] == {"Ref": "EventBusName"}


def test_every_rule_on_the_pipelines_events_listens_on_the_bus_they_are_published_to() -> None:
    rules = {
        name: resource["Properties"]
        for name, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Events::Rule"
        and SOURCE in resource["Properties"]["EventPattern"].get("source", [])
    }

    # A rule without EventBusName sits on the default bus: with a bus of one's own it would never
    # fire (no event-driven dispatch, no webhooks).
    assert {"DispatchRule", "NotifyRule"} <= set(rules)
    for name, properties in rules.items():
        assert properties.get("EventBusName") == {"Ref": "EventBusName"}, name
