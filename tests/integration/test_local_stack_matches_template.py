"""The local stack is built from template.yaml: what the template says is what runs locally."""

from __future__ import annotations

import json

import boto3

from local.aws import REGION, aws_environment
from local.stack import StackInfo
from local.template import Resolver, load_template, parameter_defaults
from tests.support.pipeline import Pipeline


def _session(stack: StackInfo) -> boto3.session.Session:
    env = aws_environment(stack.aws_endpoint)
    return boto3.session.Session(
        region_name=REGION,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def test_the_queue_has_the_templates_timeout_and_dead_letter_policy(stack: StackInfo) -> None:
    template = load_template()
    resolver = Resolver(template, parameter_defaults(template), refs=dict(stack.resources))
    sqs = _session(stack).client("sqs", endpoint_url=stack.aws_endpoint)
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.outputs["SubmitQueueUrl"], AttributeNames=["All"]
    )["Attributes"]

    queue = template["Resources"]["SubmitQueue"]["Properties"]
    assert int(attributes["VisibilityTimeout"]) == int(resolver.resolve(queue["VisibilityTimeout"]))
    redrive = json.loads(attributes["RedrivePolicy"])
    expected_receives = resolver.resolve(queue["RedrivePolicy"]["maxReceiveCount"])
    assert int(redrive["maxReceiveCount"]) == int(expected_receives)
    assert redrive["deadLetterTargetArn"].endswith(
        stack.outputs["SubmitDeadLetterQueueUrl"].rsplit("/", 1)[1]
    )


def test_the_upload_rule_has_the_templates_pattern(stack: StackInfo) -> None:
    template = load_template()
    resolver = Resolver(template, parameter_defaults(template), refs=dict(stack.resources))
    expected = resolver.resolve(template["Resources"]["UploadRule"]["Properties"]["EventPattern"])
    events = _session(stack).client("events", endpoint_url=stack.aws_endpoint)

    rule = events.describe_rule(Name=stack.resources["UploadRule"])

    assert json.loads(rule["EventPattern"]) == expected


def test_the_input_bucket_is_versioned_as_the_template_says(stack: StackInfo) -> None:
    s3 = _session(stack).client("s3", endpoint_url=stack.aws_endpoint)
    versioning = s3.get_bucket_versioning(Bucket=stack.outputs["InputBucketName"])
    assert versioning["Status"] == "Enabled"


def test_functions_get_the_environment_the_template_gives_them(stack: StackInfo) -> None:
    submit = stack.functions["SubmitFunction"]["environment"]
    webhook = stack.functions["WebhookFunction"]["environment"]

    assert submit["WEBHOOK_URL"] == stack.webhook_url
    assert submit["JOBS_TABLE"] == webhook["JOBS_TABLE"] == stack.outputs["JobsTableName"]
    assert submit["INPUT_PREFIX"] == "uploads/"
    assert webhook["OUTPUT_BUCKET"] == stack.outputs["OutputBucketName"]
    assert "FAL_KEY" not in submit  # the key is read from Secrets Manager, never the environment
    assert stack.functions["SubmitFunction"]["sqs"]["report_batch_item_failures"] is True
    # The LogLevel parameter sets every function's log level (this stack runs the default).
    template = load_template()
    functions = [
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    ]
    assert template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"] == {
        "Ref": "LogLevel"
    }
    assert sorted(stack.functions) == sorted(functions)
    for name in functions:
        own = template["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {})
        assert own.get("POWERTOOLS_LOG_LEVEL", {"Ref": "LogLevel"}) == {"Ref": "LogLevel"}, name
        level = stack.functions[name]["environment"]["POWERTOOLS_LOG_LEVEL"]
        assert level == parameter_defaults(template)["LogLevel"], name


def test_objects_the_rule_does_not_watch_start_no_job(pipeline: Pipeline) -> None:
    before = pipeline.table.scan(Select="COUNT")["Count"]
    for key in ("elsewhere/photo.jpg", "uploads/notes.txt", "uploads/photo.gif"):
        pipeline.s3.put_object(
            Bucket=pipeline.input_bucket, Key=key, Body=b"x", Metadata={"prompt": "no"}
        )
    # An event the rule let through is on the queue by now (moto routes it within the PUT): once
    # the queue is empty, every such event would have made its job.
    pipeline.wait_for_queue_drained()

    assert pipeline.table.scan(Select="COUNT")["Count"] == before


def test_a_message_naming_the_output_bucket_is_ignored(pipeline: Pipeline) -> None:
    """The loop guard holds even if someone points a rule at the output bucket."""
    before = pipeline.table.scan(Select="COUNT")["Count"]
    mark = pipeline.log_mark("SubmitFunction")
    pipeline.send_raw_message(
        json.dumps(
            {
                "source": "aws.s3",
                "detail-type": "Object Created",
                "detail": {
                    "bucket": {"name": pipeline.output_bucket},
                    "object": {"key": "uploads/loop.mp4", "size": 10, "version-id": "v1"},
                },
            }
        )
    )
    pipeline.wait_for_log(
        "SubmitFunction",
        "Ignoring an object outside the input prefix",
        since=mark,
        bucket=pipeline.output_bucket,
        object_key="uploads/loop.mp4",
    )

    assert pipeline.table.scan(Select="COUNT")["Count"] == before
