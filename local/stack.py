"""Starts the whole pipeline on this machine: ``python -m local.stack`` (or ``make stack``).

moto server (AWS), the fal emulator (HTTPS) and a Lambda runtime per function (its event source
and a pool of worker processes, one per concurrent invocation), all on loopback ports, with every
resource and setting taken from template.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3

from local.aws import (
    REGION,
    MotoServer,
    aws_environment,
    free_port,
    physical_name,
    process_environment,
    provision,
)
from local.template import NO_VALUE, REPO_ROOT, Resolver, load_template, parameter_defaults

FAL_KEY_PREFIX = "local-emulator-key"
# Execution environments of a function the template sets no concurrency for (Lambda's limit is
# then the account's): workers start only when invocations overlap, so this is only a ceiling.
UNRESERVED_CONCURRENCY = 4
# The fal user the emulator signs deliveries for, and so the stack's (required) FalUserId.
FAL_USER_ID = "local-fal-user"
SCHEDULED_EVENT = REPO_ROOT / "events" / "reconciler-schedule.json"


@dataclass
class StackInfo:
    """Where everything is; written to ``stack.json`` for the runtimes and for people."""

    state_dir: str
    aws_endpoint: str
    aws_fault_proxy: str  # what the functions use for AWS: moto behind local/fault_proxy.py
    fal_url: str
    fal_ca_file: str
    webhook_url: str
    outputs: dict[str, str]
    resources: dict[str, str]
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_emulated: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)  # what boto3 or aws-cli needs

    def user_environment(self) -> dict[str, str]:
        return aws_environment(self.aws_endpoint)


class LocalStack:
    def __init__(
        self,
        state_dir: Path | None = None,
        parameters: dict[str, str] | None = None,
        *,
        run_schedules: bool = True,
        function_python_path: Sequence[Path] = (),
        function_environment: Mapping[str, str] | None = None,
    ):
        """``run_schedules=False`` leaves scheduled functions to be invoked on demand only
        (through their Invoke API), as tests do to decide when the reconciler runs.
        ``function_python_path`` (after the function's code and layer) and
        ``function_environment`` are added to every function process, e.g. a directory with a
        ``sitecustomize.py`` that instruments the functions, as the benchmark does."""
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="pika-local-"))
        self._run_schedules = run_schedules
        self._function_python_path = [str(path) for path in function_python_path]
        self._function_environment = dict(function_environment or {})
        self.logs_dir = self.state_dir / "logs"
        self._parameter_overrides = parameters or {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._moto: MotoServer | None = None
        self.info: StackInfo | None = None

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> StackInfo:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        _exit_on_sigterm()
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackInfo:
        self._moto = MotoServer(free_port(), self.logs_dir / "moto.log")
        self._moto.start()
        fault_proxy = self._start_fault_proxy(self._moto.endpoint)
        fal_key = f"{FAL_KEY_PREFIX}-{secrets.token_hex(8)}"
        fal_url, ca_file = self._start_emulator(fal_key)

        template = load_template()
        parameters = {
            **parameter_defaults(template),
            # The local stack's fal is the emulator: its keys, its user, its media host.
            "FalJwksUrl": f"{fal_url}/.well-known/jwks.json",
            "FalUserId": FAL_USER_ID,
            "MediaHosts": "127.0.0.1",
            **self._parameter_overrides,
        }
        resolver = Resolver(template, parameters)
        self._create_event_bus(parameters["EventBusName"])
        provisioned = provision(resolver, self._moto.endpoint)
        self._create_fal_key_secret(parameters["FalKeySecretName"], fal_key)

        functions = _functions(template)
        ports = {name: free_port() for name, f in functions.items() if "FunctionUrlConfig" in f}
        for name, port in ports.items():
            resolver.attributes[(f"{name}Url", "FunctionUrl")] = f"http://127.0.0.1:{port}/"
        for name in functions:  # !Ref of a function is its name (the local runtime's)
            resolver.refs.setdefault(name, physical_name(name))
        specs = {
            name: _function_spec(name, properties, resolver, ports.get(name), self._run_schedules)
            for name, properties in functions.items()
        }
        outputs = {
            name: str(resolver.resolve(output["Value"]))
            for name, output in template.get("Outputs", {}).items()
        }
        self.info = StackInfo(
            state_dir=str(self.state_dir),
            aws_endpoint=self._moto.endpoint,
            aws_fault_proxy=fault_proxy,
            fal_url=fal_url,
            fal_ca_file=str(ca_file),
            webhook_url=outputs.get("WebhookUrl", ""),
            outputs=outputs,
            resources=provisioned.refs,
            functions=specs,
            not_emulated=provisioned.skipped,
            environment=aws_environment(self._moto.endpoint),
        )
        stack_file = self.state_dir / "stack.json"
        stack_file.write_text(json.dumps(asdict(self.info), indent=2))
        for stale in self.state_dir.glob("*.ready"):
            stale.unlink()
        for name, spec in specs.items():
            self._start_function(stack_file, name, spec)
        for name in specs:
            _wait_for(self.state_dir / f"{name}.ready", self._processes[name], self.logs_dir)
        return self.info

    def kill_and_restart(self, name: str) -> None:
        """A function's processes die mid-invocation (SIGKILL), and Lambda starts new ones."""
        assert self.info
        process = self._processes[name]
        _signal_group(process, signal.SIGKILL)
        process.wait()
        (self.state_dir / f"{name}.ready").unlink(missing_ok=True)
        self._start_function(self.state_dir / "stack.json", name, self.info.functions[name])
        _wait_for(self.state_dir / f"{name}.ready", self._processes[name], self.logs_dir)

    def stop(self) -> None:
        for process in self._processes.values():
            _signal_group(process, signal.SIGTERM)
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
        self._processes.clear()
        if self._moto:
            self._moto.stop()
            self._moto = None

    def _start_emulator(self, fal_key: str) -> tuple[str, Path]:
        port = free_port()
        emulator_dir = self.state_dir / "fal"
        (emulator_dir / "fal-emulator.json").unlink(missing_ok=True)
        self._processes["fal-emulator"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.fal_emulator",
                "--port",
                str(port),
                "--state-dir",
                str(emulator_dir),
                "--fal-key",
                fal_key,
                # The emulated account runs what the operator says theirs does (FalConcurrency).
                "--concurrency",
                self._parameter_overrides.get("FalConcurrency")
                or parameter_defaults(load_template()).get("FalConcurrency")
                or "2",
                "--user-id",
                FAL_USER_ID,
            ],
            cwd=REPO_ROOT,
            env=process_environment({"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}),
            stdout=(self.logs_dir / "fal-emulator.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        ready_file = emulator_dir / "fal-emulator.json"
        _wait_for(ready_file, self._processes["fal-emulator"], self.logs_dir)
        ready = json.loads(ready_file.read_text())
        context = ssl.create_default_context(cafile=ready["ca_file"])
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(  # noqa: S310
                    f"{ready['url']}/.well-known/jwks.json", context=context, timeout=2
                ):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return str(ready["url"]), Path(ready["ca_file"])

    def _start_fault_proxy(self, upstream: str) -> str:
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.fault_proxy",
                "--port",
                str(port),
                "--upstream",
                upstream,
            ],
            cwd=REPO_ROOT,
            env=process_environment({"PYTHONPATH": str(REPO_ROOT)}),
            stdout=(self.logs_dir / "fault-proxy.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        self._processes["fault-proxy"] = process
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_faults", timeout=1):  # noqa: S310
                    return url
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the fault proxy did not start; see {self.logs_dir}"
                    ) from None
                time.sleep(0.05)

    def _create_event_bus(self, name: str) -> None:
        """A bus of one's own must exist before the stack (EventBusName); the operator's part."""
        if name == "default":
            return
        assert self._moto
        env = aws_environment(self._moto.endpoint)
        boto3.client(
            "events",
            endpoint_url=self._moto.endpoint,
            region_name=REGION,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        ).create_event_bus(Name=name)

    def _create_fal_key_secret(self, name: str, value: str) -> None:
        assert self._moto
        env = aws_environment(self._moto.endpoint)
        boto3.client(
            "secretsmanager",
            endpoint_url=self._moto.endpoint,
            region_name=REGION,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        ).create_secret(Name=name, SecretString=value)

    def _start_function(self, stack_file: Path, name: str, spec: dict[str, Any]) -> None:
        assert self.info
        code_dir, layer_dir = spec["code_dir"], spec["layer_dir"]
        env = process_environment(
            {
                **aws_environment(self.info.aws_fault_proxy),
                **spec["environment"],
                **self._function_environment,
                "AWS_LAMBDA_FUNCTION_NAME": spec["function_name"],
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memory"]),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
                # How the functions find the emulator: fal_client's host, fal's Platform API
                # (the request history) and the CA that signed the emulator's certificate (the
                # only local-only settings they get).
                "FAL_QUEUE_RUN_HOST": self.info.fal_url.removeprefix("https://"),
                "FAL_PLATFORM_API_URL": f"{self.info.fal_url}/v1",
                "SSL_CERT_FILE": self.info.fal_ca_file,
                # Lambda's order: function code (/var/task) first, then the layer (/opt/python).
                "PYTHONPATH": os.pathsep.join(
                    [code_dir, layer_dir, str(REPO_ROOT), *self._function_python_path]
                ),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self._processes[name] = subprocess.Popen(
            [sys.executable, "-m", "local.lambda_runtime", str(stack_file), name],
            cwd=REPO_ROOT,
            env=env,
            stdout=(self.logs_dir / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            # The function's worker processes join its group, so they are killed with it.
            process_group=0,
        )


def _exit_on_sigterm() -> None:
    """A ``kill`` (SIGTERM) stops the stack as Ctrl+C does, its processes with it: by default
    Python would die at once and leave moto, the emulator and the functions running."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(
        signal.SIGTERM
    ) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signals a function's processes (its event source and its workers), or any other one."""
    if process.poll() is not None:
        return
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    except ProcessLookupError:
        pass  # it has just exited


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each function's properties with the template's Globals applied, as SAM does."""
    globals_ = template.get("Globals", {}).get("Function", {})
    merged = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = {**globals_, **resource["Properties"]}
        variables = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **resource["Properties"].get("Environment", {}).get("Variables", {}),
        }
        properties["Environment"] = {"Variables": variables}
        merged[name] = properties
    return merged


def _function_spec(
    name: str,
    properties: dict[str, Any],
    resolver: Resolver,
    url_port: int | None,
    run_schedules: bool,
) -> dict[str, Any]:
    layer_dirs = [
        str(REPO_ROOT / resolver.template["Resources"][layer["Ref"]]["Properties"]["ContentUri"])
        for layer in properties.get("Layers", [])
    ]
    spec: dict[str, Any] = {
        "function_name": physical_name(name),
        "handler": properties["Handler"],
        "code_dir": str(REPO_ROOT / properties["CodeUri"]),
        "layer_dir": os.pathsep.join(layer_dirs),
        "memory": int(properties.get("MemorySize", 128)),
        "timeout": int(properties.get("Timeout", 3)),
        "environment": {
            key: str(value)
            for key, value in resolver.resolve(properties["Environment"]["Variables"]).items()
        },
        "function_url_port": url_port,
    }
    # Lambda's limits on concurrent invocations: reserved concurrency, and for an SQS event
    # source its MaximumConcurrency; each is a worker process in the local runtime.
    limits = []
    reserved = resolver.resolve(properties.get("ReservedConcurrentExecutions", NO_VALUE))
    if reserved is not NO_VALUE:
        limits.append(int(reserved))
    for event in properties.get("Events", {}).values():
        if event["Type"] == "Schedule":
            spec["schedule"] = {
                "every_seconds": _rate_seconds(resolver.resolve(event["Properties"]["Schedule"])),
                "enabled": run_schedules,
                "event": json.loads(SCHEDULED_EVENT.read_text()),
            }
            spec["invoke_port"] = free_port()
            spec["invoke_url"] = f"http://127.0.0.1:{spec['invoke_port']}"
        if event["Type"] == "SQS":
            queue_arn = resolver.resolve(event["Properties"]["Queue"])
            queue_url = next(
                value
                for (logical, attribute), value in resolver.attributes.items()
                if attribute == "QueueUrl"
                and resolver.attributes.get((logical, "Arn")) == queue_arn
            )
            spec["sqs"] = {
                "queue_url": queue_url,
                "batch_size": int(event["Properties"].get("BatchSize", 10)),
                "report_batch_item_failures": "ReportBatchItemFailures"
                in event["Properties"].get("FunctionResponseTypes", []),
            }
            scaling = resolver.resolve(event["Properties"].get("ScalingConfig", {}))
            if "MaximumConcurrency" in scaling:
                limits.append(int(scaling["MaximumConcurrency"]))
    spec["concurrency"] = min(limits, default=UNRESERVED_CONCURRENCY)
    return spec


def _rate_seconds(expression: str) -> int:
    """Seconds between runs of ``rate(N minute|minutes|hour|hours|day|days)``."""
    amount, unit = expression.removeprefix("rate(").removesuffix(")").split()
    return int(amount) * {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]


def _wait_for(path: Path, process: subprocess.Popen[bytes], logs_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"{path.stem} exited during start-up; see the logs in {logs_dir}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.stem} did not start within 60 s; see {logs_dir}")
        time.sleep(0.05)


def describe(info: StackInfo) -> str:
    env = info.user_environment()
    lines = [
        "pika-pipeline local stack is running.",
        f"  AWS (moto server) : {info.aws_endpoint}",
        f"  fal emulator      : {info.fal_url}  (CA: {info.fal_ca_file})",
        f"  webhook URL       : {info.webhook_url}",
        f"  input bucket      : {info.outputs['InputBucketName']}",
        f"  output bucket     : {info.outputs['OutputBucketName']}",
        f"  jobs table        : {info.outputs['JobsTableName']}",
        f"  logs              : {info.state_dir}/logs",
        "",
        "Use it from another shell with boto3 or the aws CLI:",
        *(f"  export {key}={shlex.quote(value)}" for key, value in env.items()),
        f"  aws s3 cp photo.png s3://{info.outputs['InputBucketName']}/uploads/photo.png "
        '--metadata prompt="a slow push-in, soft light"',
        f"  aws dynamodb scan --table-name {info.outputs['JobsTableName']}",
        "",
        "or with the project's command line (it finds this stack by itself):",
        '  .venv/bin/pika-pipeline upload photo.png --prompt "a slow push-in, soft light"',
        "  .venv/bin/pika-pipeline jobs",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=REPO_ROOT / ".local-stack",
        help="where stack.json, the logs and the emulator's files go (default: .local-stack)",
    )
    args = parser.parse_args()
    with LocalStack(args.state_dir) as info:
        print(describe(info), flush=True)
        print("\nPress Ctrl+C to stop.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nStopping.", flush=True)


if __name__ == "__main__":
    main()
