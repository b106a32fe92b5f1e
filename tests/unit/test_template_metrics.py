"""The dashboard and alarms in template.yaml watch metrics the code really emits."""

from __future__ import annotations

import json
import re
from typing import Any

from local.template import REPO_ROOT, Resolver, load_template, parameter_defaults

PACKAGE = REPO_ROOT / "layers" / "shared" / "pika_pipeline"


def _emitted_metric_names() -> set[str]:
    source = "\n".join(path.read_text() for path in PACKAGE.glob("*.py"))
    return set(re.findall(r'count\("(\w+)"', source)) | set(re.findall(r'name="(\w+)"', source))


def _dashboard() -> dict[str, Any]:
    template = load_template()
    resolver = Resolver(template, parameter_defaults(template))
    for queue in ("SubmitDeadLetterQueue", "UploadRuleDeadLetterQueue"):
        resolver.attributes[(queue, "QueueName")] = f"{queue}-name"
    body = resolver.resolve(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    dashboard: dict[str, Any] = json.loads(body)
    return dashboard


def test_the_dashboard_is_valid_json_and_charts_emitted_metrics() -> None:
    emitted = _emitted_metric_names()
    charted = set()
    for widget in _dashboard()["widgets"]:
        for metric in widget["properties"]["metrics"]:
            if isinstance(metric[0], dict):  # a SEARCH expression
                charted |= set(re.findall(r'MetricName=\\"(\w+)\\"', metric[0]["expression"]))
                charted |= set(re.findall(r'MetricName="(\w+)"', metric[0]["expression"]))
            elif metric[0] == "PikaPipeline":
                charted.add(metric[1])

    assert charted
    assert charted <= emitted, charted - emitted


def test_every_custom_metric_alarm_watches_an_emitted_metric() -> None:
    emitted = _emitted_metric_names()
    alarms = [
        resource["Properties"]
        for resource in load_template()["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"].get("Namespace") == "PikaPipeline"
    ]

    assert alarms
    assert {alarm["MetricName"] for alarm in alarms} <= emitted
