"""The CloudWatch dashboard of template.yaml as charts and searches, for tests to read."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from local.template import Resolver, load_template, parameter_defaults

DEAD_LETTER_QUEUES = ("SubmitDeadLetterQueue", "UploadRuleDeadLetterQueue", "NotifyDeadLetterQueue")


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


def function_globals() -> dict[str, Any]:
    variables: dict[str, Any] = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    return variables


def metrics_namespace() -> str:
    return str(function_globals()["POWERTOOLS_METRICS_NAMESPACE"])


def widgets() -> list[Widget]:
    template = load_template()
    resolver = Resolver(template, parameter_defaults(template))
    for queue in DEAD_LETTER_QUEUES:
        resolver.attributes[(queue, "QueueName")] = f"{queue}-name"
    body = resolver.resolve(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    found = []
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
        found.append(widget)
    return found


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
