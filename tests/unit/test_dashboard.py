"""The CloudWatch dashboard in template.yaml shows what an operator opens it for: the flow of
jobs, failures by code, generation time percentiles, webhook rejections and the dead letters; and
every custom metric it or an alarm watches is in the namespace the functions write to."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from local.template import Resolver, load_template, parameter_defaults

DEAD_LETTER_QUEUES = ("SubmitDeadLetterQueue", "UploadRuleDeadLetterQueue")


@dataclass(frozen=True)
class Chart:
    """One line of a widget: a metric with its dimensions and statistic."""

    namespace: str
    name: str
    dimensions: dict[str, str]
    stat: str | None


@dataclass
class Widget:
    title: str
    charts: list[Chart] = field(default_factory=list)
    # SEARCH expressions: (namespace, dimension names, metric name)
    searches: list[tuple[str, frozenset[str], str]] = field(default_factory=list)

    def stats_of(self, name: str) -> set[str | None]:
        return {chart.stat for chart in self.charts if chart.name == name}


def _globals() -> dict[str, Any]:
    variables: dict[str, Any] = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    return variables


def _namespace() -> str:
    return str(_globals()["POWERTOOLS_METRICS_NAMESPACE"])


def _widgets() -> list[Widget]:
    template = load_template()
    resolver = Resolver(template, parameter_defaults(template))
    for queue in DEAD_LETTER_QUEUES:
        resolver.attributes[(queue, "QueueName")] = f"{queue}-name"
    body = resolver.resolve(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    widgets = []
    for raw in json.loads(body)["widgets"]:
        properties = raw["properties"]
        widget = Widget(title=properties.get("title", ""))
        previous: list[str] = []
        for line in properties.get("metrics", []):
            if isinstance(line[0], dict):
                widget.searches.extend(_searches(line[0]["expression"]))
                continue
            names, options = _split(line)
            previous = _expand(names, previous)
            namespace, metric, *pairs = previous
            widget.charts.append(
                Chart(
                    namespace=namespace,
                    name=metric,
                    dimensions=dict(zip(pairs[::2], pairs[1::2], strict=True)),
                    stat=options.get("stat", properties.get("stat")),
                )
            )
        widgets.append(widget)
    return widgets


def _split(line: list[Any]) -> tuple[list[str], dict[str, Any]]:
    if isinstance(line[-1], dict):
        return [str(item) for item in line[:-1]], line[-1]
    return [str(item) for item in line], {}


def _expand(names: list[str], previous: list[str]) -> list[str]:
    """CloudWatch's shorthand: "." repeats the previous line's item at that position, and "..."
    repeats the previous line's items up to the ones that follow it."""
    if names and names[0] == "...":
        rest = names[1:]
        return previous[: len(previous) - len(rest)] + rest
    return [previous[i] if name == "." else name for i, name in enumerate(names)]


def _searches(expression: str) -> list[tuple[str, frozenset[str], str]]:
    found = []
    for schema, metric in re.findall(r"\{([^}]*)\}\s*MetricName=\\?\"(\w+)\\?\"", expression):
        namespace, *dimensions = [part.strip() for part in schema.split(",")]
        found.append((namespace, frozenset(dimensions), metric))
    return found


def _charting(name: str, **dimensions: str) -> list[Widget]:
    return [
        widget
        for widget in _widgets()
        if any(
            chart.name == name and dimensions.items() <= chart.dimensions.items()
            for chart in widget.charts
        )
    ]


def _searching(name: str, by: str) -> list[Widget]:
    return [
        widget
        for widget in _widgets()
        if any(metric == name and by in dims for _, dims, metric in widget.searches)
    ]


def test_the_flow_of_jobs_is_charted_as_counts() -> None:
    flow = ("UploadsReceived", "JobsSubmitted", "VideosCompleted", "VideosFailed", "JobsRejected")
    for metric in flow:
        widgets = _charting(metric, service="pika-pipeline")
        assert widgets, f"no widget charts {metric}"
        assert all(w.stats_of(metric) == {"Sum"} for w in widgets), metric


def test_failures_and_rejections_are_broken_down_by_code() -> None:
    assert _searching("VideosFailed", by="error_code")
    assert _searching("JobsRejected", by="error_code")


def test_generation_time_is_charted_as_percentiles() -> None:
    (widget,) = _charting("GenerationSeconds", service="pika-pipeline")

    assert {"p50", "p90", "p99"} <= widget.stats_of("GenerationSeconds")


def test_webhook_rejections_are_charted_by_reason() -> None:
    assert _searching("WebhooksRejected", by="reason")


def test_both_dead_letter_queues_depth_is_charted() -> None:
    for queue in DEAD_LETTER_QUEUES:
        (widget,) = _charting("ApproximateNumberOfMessagesVisible", QueueName=f"{queue}-name")
        (chart,) = [c for c in widget.charts if c.dimensions == {"QueueName": f"{queue}-name"}]

        assert (chart.namespace, chart.stat) == ("AWS/SQS", "Maximum")


def test_the_dashboard_and_the_alarms_watch_the_functions_namespace() -> None:
    namespace = _namespace()
    charts = [chart for widget in _widgets() for chart in widget.charts]
    custom = [chart.namespace for chart in charts if not chart.namespace.startswith("AWS/")]
    services = {chart.dimensions.get("service") for chart in charts if chart.namespace in custom}
    searched = [ns for widget in _widgets() for ns, _, _ in widget.searches]
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
    assert services == {_globals()["POWERTOOLS_SERVICE_NAME"]}  # the dimension the code writes
