"""``make stack`` (``python -m local.stack``) as a person or a harness runs it: stopped by Ctrl+C
or by ``kill``, it takes every process it started with it."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from local.template import REPO_ROOT

START_SECONDS = 180  # a stack starts in seconds; a loaded CI machine gets room


def _answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5, context=context)  # noqa: S310 - loopback
    except urllib.error.HTTPError:
        return True  # it answered, if not with a 2xx
    except OSError:
        return False
    return True


def _processes_naming(path: Path) -> list[str]:
    """Command lines of the processes that name ``path`` (the functions' runtimes name the
    stack's files): /proc, as the local stack runs where Lambda does, on Linux."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # it has just exited
        if any(str(path).encode() in word for word in words):
            found.append(b" ".join(words).decode(errors="replace"))
    return found


@pytest.mark.stack
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_stopped_stack_leaves_nothing_running(tmp_path: Path, signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "local.stack", "--state-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    hung = threading.Timer(START_SECONDS, process.kill)
    hung.start()
    try:
        assert process.stdout
        for line in process.stdout:  # the stack prints this once everything answers
            if "Press Ctrl+C to stop." in line:
                break
        else:
            pytest.fail(f"the stack was not ready in {START_SECONDS} s (exit {process.wait()})")
        hung.cancel()
        info = json.loads((tmp_path / "stack.json").read_text())
        fal = ssl.create_default_context(cafile=info["fal_ca_file"])
        servers = [
            (info["aws_endpoint"], None),
            (info["aws_fault_proxy"], None),
            (info["fal_url"], fal),
            (info["webhook_url"], None),
        ]
        assert all(_answers(url, context) for url, context in servers)
        assert len(_processes_naming(tmp_path)) >= len(info["functions"])

        process.send_signal(signum)
        process.wait(timeout=60)

        assert [url for url, context in servers if _answers(url, context)] == []
        assert _processes_naming(tmp_path) == []
    finally:
        hung.cancel()
        if process.poll() is None:
            process.kill()
