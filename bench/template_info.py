"""What the benchmarks read from template.yaml: each function's settings and a realistic env.

The environment a deployed function would get is rebuilt from the template itself (Globals plus
the function's variables, parameters at their defaults, resources named as CloudFormation would
name them), so a setting the template adds shows up here without editing the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local.aws import ACCOUNT_ID, REGION
from local.template import Resolver, load_template, parameter_defaults

# The Lambdas the benchmark measures, by the short name its rows use ("cold start: submit").
HANDLERS = {
    "submit": "SubmitFunction",
    "webhook": "WebhookFunction",
    "reconciler": "ReconcilerFunction",
}


@dataclass(frozen=True)
class FunctionInfo:
    logical_id: str
    handler: str
    code_uri: str
    memory_mb: int
    timeout_s: int
    architecture: str
    variables: dict[str, Any]  # unresolved, as written in the template
    schedules: list[Any]  # Schedule expressions of its Schedule events, unresolved


class _Physical(dict[str, str]):
    """Ref of any resource: a name shaped like the one CloudFormation generates."""

    def __init__(self, template: dict[str, Any]) -> None:
        super().__init__()
        self._template = template

    def __missing__(self, logical: str) -> str:
        kind = self._template["Resources"].get(logical, {}).get("Type", "")
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{logical}-AbCdEf"
        return f"pika-pipeline-{logical}-1A2B3C4D5E6F".lower()


class _Attributes(dict[tuple[str, str], str]):
    """GetAtt of any resource: a realistic URL or ARN."""

    def __missing__(self, key: tuple[str, str]) -> str:
        logical, attribute = key
        if attribute == "FunctionUrl":
            return f"https://{'k3x9' * 8}.lambda-url.{REGION}.on.aws/"
        return f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:{logical}/{attribute}"


def functions(template: dict[str, Any] | None = None) -> dict[str, FunctionInfo]:
    """Every AWS::Serverless::Function with the template's Globals applied, as SAM does."""
    template = template or load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    found: dict[str, FunctionInfo] = {}
    for logical, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = {**globals_, **resource.get("Properties", {})}
        variables = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **resource.get("Properties", {}).get("Environment", {}).get("Variables", {}),
        }
        found[logical] = FunctionInfo(
            logical_id=logical,
            handler=str(properties.get("Handler", "app.lambda_handler")),
            code_uri=str(properties.get("CodeUri", "")),
            memory_mb=int(properties.get("MemorySize", 128)),
            timeout_s=int(properties.get("Timeout", 3)),
            architecture=str((properties.get("Architectures") or ["x86_64"])[0]),
            variables=variables,
            schedules=[
                event.get("Properties", {}).get("Schedule")
                for event in properties.get("Events", {}).values()
                if event.get("Type") == "Schedule"
            ],
        )
    return found


# What an operator must give for the parameters that have no default (as `sam deploy` asks).
REQUIRED_PARAMETERS = {"FalUserId": "bench-fal-user"}


def _resolver(template: dict[str, Any]) -> Resolver:
    resolver = Resolver(template, {**parameter_defaults(template), **REQUIRED_PARAMETERS})
    resolver.refs = _Physical(template)
    resolver.attributes = _Attributes()
    return resolver


def schedule_seconds(function: FunctionInfo, template: dict[str, Any]) -> list[int]:
    """Seconds between runs of each ``rate(N unit)`` schedule, parameters at their defaults."""
    found = []
    for schedule in function.schedules:
        expression = str(_resolver(template).resolve(schedule))
        if not expression.startswith("rate("):
            continue  # cron(...) schedules are not modelled
        amount, unit = expression.removeprefix("rate(").removesuffix(")").split()
        found.append(int(amount) * {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")])
    return found


def deployed_environment(function: FunctionInfo, template: dict[str, Any]) -> dict[str, str]:
    """The environment Lambda would give the function, with parameters at their defaults."""
    resolved = _resolver(template).resolve(function.variables)
    variables = {key: str(value) for key, value in resolved.items()}
    name = f"pika-pipeline-{function.logical_id}-9Z8Y7X6W5V4U"
    return {
        **variables,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "ASIABENCHMARKEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "benchmark-example-secret-key-not-real",
        "AWS_SESSION_TOKEN": "benchmark-example-session-token",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "LAMBDA_TASK_ROOT": "/var/task",
        "TZ": ":UTC",
    }
