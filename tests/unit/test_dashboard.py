"""The CloudWatch dashboard in template.yaml shows what an operator opens it for: the flow of
jobs, failures by code, generation time percentiles, webhook rejections and the dead letters; and
every custom metric it or an alarm watches is in the namespace the functions write to."""

from __future__ import annotations

from local.template import load_template
from tests.support.dashboard import (
    DEAD_LETTER_QUEUES,
    Widget,
    function_globals,
    metrics_namespace,
    widgets,
)


def _charting(name: str, **dimensions: str) -> list[Widget]:
    return [
        widget
        for widget in widgets()
        if any(
            chart.name == name and dimensions.items() <= chart.dimensions.items()
            for chart in widget.charts
        )
    ]


def _searching(name: str, by: str) -> list[Widget]:
    return [
        widget
        for widget in widgets()
        if any(metric == name and by in dims for _, dims, metric in widget.searches)
    ]


def test_the_flow_of_jobs_is_charted_as_counts() -> None:
    flow = ("UploadsReceived", "JobsSubmitted", "VideosCompleted", "VideosFailed", "JobsRejected")
    for metric in flow:
        found = _charting(metric, service="pika-pipeline")
        assert found, f"no widget charts {metric}"
        assert all(w.stats_of(metric) == {"Sum"} for w in found), metric


def test_failures_and_rejections_are_broken_down_by_code() -> None:
    assert _searching("VideosFailed", by="error_code")
    assert _searching("JobsRejected", by="error_code")


def test_generation_time_is_charted_as_percentiles() -> None:
    (widget,) = _charting("GenerationSeconds", service="pika-pipeline")

    assert {"p50", "p90", "p99"} <= widget.stats_of("GenerationSeconds")


def test_webhook_rejections_are_charted_by_reason() -> None:
    assert _searching("WebhooksRejected", by="reason")


def test_every_dead_letter_queues_depth_is_charted() -> None:
    for queue in DEAD_LETTER_QUEUES:
        (widget,) = _charting("ApproximateNumberOfMessagesVisible", QueueName=f"{queue}-name")
        (chart,) = [c for c in widget.charts if c.dimensions == {"QueueName": f"{queue}-name"}]

        assert (chart.namespace, chart.stat) == ("AWS/SQS", "Maximum")


def test_the_dashboard_and_the_alarms_watch_the_functionsmetrics_namespace() -> None:
    namespace = metrics_namespace()
    charts = [chart for widget in widgets() for chart in widget.charts]
    custom = [chart.namespace for chart in charts if not chart.namespace.startswith("AWS/")]
    services = {chart.dimensions.get("service") for chart in charts if chart.namespace in custom}
    searched = [ns for widget in widgets() for ns, _, _ in widget.searches]
    alarms = [
        resource["Properties"]["Namespace"]
        for resource in load_template()["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and "Namespace" in resource["Properties"]
        and not resource["Properties"]["Namespace"].startswith("AWS/")
    ]

    assert custom
    assert searched
    assert alarms
    assert set(custom) | set(searched) | set(alarms) == {namespace}
    assert services == {
        function_globals()["POWERTOOLS_SERVICE_NAME"]
    }  # the dimension the code writes
