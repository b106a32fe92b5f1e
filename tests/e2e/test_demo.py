"""`make demo`: an image and a prompt in, a playable MP4 and the job record out."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from local.demo import DEFAULT_IMAGE, run
from local.stack import StackInfo
from pika_pipeline.submit.video_request import encode_metadata_value
from tests.support.pipeline import Pipeline

PROMPT = "Un café sur le port, lumière douce — 港の朝"


def test_the_demo_saves_a_playable_video_and_prints_the_completed_record(
    stack: StackInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metadata = {"prompt": encode_metadata_value(PROMPT), "duration": "1"}

    exit_code = run(stack, DEFAULT_IMAGE, metadata, tmp_path)

    out = capsys.readouterr().out.splitlines()
    assert exit_code == 0
    record = json.loads(out[-1])
    assert (record["status"], record["prompt"]) == ("COMPLETED", PROMPT)
    assert any("SUBMITTED" in line or "PENDING" in line for line in out)
    (video,) = tmp_path.glob("*.mp4")
    assert out[-2] == f"Video saved: {video}"
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (1280, 720)


def test_the_demo_exits_non_zero_when_the_job_does_not_complete(
    stack: StackInfo, pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.fal_faults(outcome=["error"])

    exit_code = run(stack, DEFAULT_IMAGE, {"prompt": "waves", "duration": "1"}, tmp_path)

    captured = capsys.readouterr()
    assert exit_code == 1
    assert json.loads(captured.out.splitlines()[-1])["status"] == "FAILED"
    assert "did not complete" in captured.err
    assert not list(tmp_path.glob("*.mp4"))
