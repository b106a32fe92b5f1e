"""The dashboard and alarms in template.yaml watch metrics the code really emits, and every
failure the issue names has an alarm on the one topic."""

from __future__ import annotations

from typing import Any

from local.template import REPO_ROOT, Resolver, is_created, load_template, parameter_defaults
from pika_pipeline.observability import Metric
from tests.support.dashboard import metrics_namespace, widgets

# Every metric the code emits is a Metric: count() and every add_metric take one.
EMITTED = {str(metric) for metric in Metric}


def _charted() -> set[str]:
    namespace = metrics_namespace()
    return {
        chart.name
        for widget in widgets()
        for chart in widget.charts
        if chart.namespace == namespace
    } | {name for widget in widgets() for ns, _, name in widget.searches if ns == namespace}


def _alarmed() -> set[str]:
    return {
        resource["Properties"]["MetricName"]
        for resource in load_template()["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"].get("Namespace") == metrics_namespace()
    }


def test_the_dashboard_charts_only_emitted_metrics() -> None:
    charted = _charted()

    assert charted
    assert charted <= EMITTED, charted - EMITTED


def test_every_emitted_metric_is_charted() -> None:
    assert EMITTED - _charted() == set()


def test_every_metric_is_still_emitted_somewhere() -> None:
    # A Metric nothing emits any more would leave its chart or alarm watching silence.
    package = REPO_ROOT / "layers" / "shared" / "pika_pipeline"
    source = "\n".join(path.read_text() for path in package.rglob("*.py"))

    assert [m.name for m in Metric if f"Metric.{m.name}" not in source] == []


def test_every_custom_metric_alarm_watches_an_emitted_metric() -> None:
    alarmed = _alarmed()

    assert alarmed
    assert alarmed <= EMITTED, alarmed - EMITTED


def _alarms() -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in load_template()["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def _watching(metric: str, **dimensions: Any) -> list[dict[str, Any]]:
    """The alarms on ``metric`` whose dimensions include these (values as in the template)."""
    found = []
    for alarm in _alarms().values():
        watched = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        if alarm.get("MetricName") == metric and dimensions.items() <= watched.items():
            found.append(alarm)
    return found


def test_any_dead_letter_queue_holding_a_message_alarms() -> None:
    for queue in ("SubmitDeadLetterQueue", "UploadRuleDeadLetterQueue", "NotifyDeadLetterQueue"):
        name = {"Fn::GetAtt": [queue, "QueueName"]}
        (alarm,) = _watching("ApproximateNumberOfMessagesVisible", QueueName=name)

        assert (alarm["Namespace"], alarm["Statistic"]) == ("AWS/SQS", "Maximum")
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_failed_videos_above_a_rate_and_a_spike_of_webhook_rejections_alarm() -> None:
    for metric in ("VideosFailed", "WebhooksRejected"):
        (alarm,) = _watching(metric, service="pika-pipeline")

        assert alarm["Statistic"] == "Sum"
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["Threshold"] > 0  # a rate: a single failure or probe is not an incident


def test_a_job_open_past_the_deadline_alarms() -> None:
    (alarm,) = _watching("OldestOpenJobSeconds", service="pika-pipeline")

    assert alarm["Statistic"] == "Maximum"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == {"Ref": "JobDeadlineSeconds"}


def test_reconciler_errors_and_a_reconciler_that_stopped_running_alarm() -> None:
    (errors,) = _watching("ReconcileErrors", service="pika-pipeline")
    (runs,) = _watching("Invocations", FunctionName={"Ref": "ReconcilerFunction"})

    assert (errors["ComparisonOperator"], errors["Threshold"]) == ("GreaterThanThreshold", 0)
    # No run writes no data: missing data must count as breaching for this one.
    assert (runs["ComparisonOperator"], runs["Threshold"]) == ("LessThanThreshold", 1)
    assert runs["TreatMissingData"] == "breaching"


def test_every_alarm_notifies_the_one_topic() -> None:
    resources = load_template()["Resources"]
    topics = [name for name, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]

    assert topics == ["AlarmTopic"]
    for name, alarm in _alarms().items():
        assert alarm.get("AlarmActions") == [{"Ref": "AlarmTopic"}], name


def test_the_e_mail_subscription_exists_only_when_an_address_is_given() -> None:
    template = load_template()
    (subscription,) = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"
    ]
    defaults = parameter_defaults(template)

    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert subscription["Properties"]["Protocol"] == "email"
    assert defaults["AlarmEmail"] == ""
    assert not is_created(Resolver(template, defaults), subscription)
    with_address = {**defaults, "AlarmEmail": "oncall@example.com"}
    assert is_created(Resolver(template, with_address), subscription)
