"""An upload whose key is as long as S3 allows still ends: its video's metadata always fits.

S3 refuses user metadata over 2 KB (the local stack refuses it too, see local/moto_server.py).
A legal key of about 1,000 bytes of "é" percent-quotes to about 3 KB: written whole into the
video's metadata, every copy of the paid video failed and the job stayed open forever.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from urllib.parse import unquote

import pytest

from local.aws import aws_environment, process_environment
from pika_pipeline.jobs.identity import job_id_for
from tests.support.pipeline import SAMPLE_IMAGE, Pipeline

AWS_CLI = shutil.which("aws")


@pytest.mark.stack
@pytest.mark.skipif(AWS_CLI is None, reason="needs aws-cli on the PATH")
def test_an_upload_with_a_thousand_byte_key_made_with_aws_cli_ends_completed(
    pipeline: Pipeline,
) -> None:
    key = "uploads/" + "é" * 505 + ".jpg"
    assert len(key.encode()) == 1022  # S3's limit is 1,024

    uploaded = subprocess.run(
        [
            str(AWS_CLI),
            "s3api",
            "put-object",
            "--bucket",
            pipeline.input_bucket,
            "--key",
            key,
            "--body",
            str(SAMPLE_IMAGE),
            "--metadata",
            "prompt=a very long name,duration=1",
            "--output",
            "json",
        ],
        env=process_environment(aws_environment(pipeline.info.aws_endpoint)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    version = json.loads(uploaded.stdout)["VersionId"]
    job = pipeline.wait_for_job(
        job_id_for(bucket=pipeline.input_bucket, key=key, version=version), timeout=90
    )

    assert job["status"] == "COMPLETED", job.get("error_message")
    assert job["source_key"] == key
    metadata = pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])[
        "Metadata"
    ]
    assert metadata["job-id"] == job["job_id"]  # the whole key is one lookup away
    assert metadata["source-key-truncated"] == "true"
    assert key.startswith(unquote(metadata["source-key"]))
