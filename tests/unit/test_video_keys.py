"""Readable video keys (VideoKeyTemplate) and the order of two uploads that want one key."""

from __future__ import annotations

import re

import pytest

from pika_pipeline.config.environment import ConfigurationError
from pika_pipeline.config.recorder import WebhookSettings
from pika_pipeline.results.video_keys import (
    DEFAULT_TEMPLATE,
    InvalidVideoKeyTemplate,
    UploadOrder,
    VideoKeyTemplate,
)

JOB_ID = "0123456789abcdef0123456789abcdef"


def key_of(source_key: str, template: str = DEFAULT_TEMPLATE) -> str | None:
    return VideoKeyTemplate(template).key_for(
        source_key=source_key, input_prefix="uploads/", output_prefix="videos/", job_id=JOB_ID
    )


@pytest.mark.parametrize(
    ("source_key", "video_key"),
    [
        ("uploads/shop/spring/sku 123.png", "videos/shop/spring/sku 123.mp4"),
        ("uploads/cat.jpg", "videos/cat.mp4"),
        ("uploads/été/photo.v2.webp", "videos/été/photo.v2.mp4"),
        ("uploads/.hidden", "videos/.hidden.mp4"),
        ("uploads/no-extension", "videos/no-extension.mp4"),
    ],
)
def test_the_default_mirrors_the_upload_under_the_output_prefix(
    source_key: str, video_key: str
) -> None:
    assert key_of(source_key) == video_key


def test_every_field_renders() -> None:
    template = "{prefix}by-job/{job_id}/{path}{name}.{ext}.{stem}.mp4"

    assert key_of("uploads/a/b.png", template) == f"videos/by-job/{JOB_ID}/a/b.png.png.b.mp4"


def test_a_key_longer_than_s3_allows_has_no_readable_name() -> None:
    assert key_of("uploads/" + "x" * 1010 + ".png", "{prefix}{path}{stem}-{job_id}.mp4") is None


def test_a_folder_named_like_a_job_id_never_reaches_a_staging_key() -> None:
    assert key_of(f"uploads/{'a' * 32}/req.png") is None


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{prefix}{path}{stem}", "must end with .mp4"),
        ("videos/{stem}.mp4", "must start with {prefix}"),
        ("{prefix}{path}.mp4", "must use {stem}, {name} or {job_id}"),
        ("{prefix}{bucket}/{stem}.mp4", "names {bucket}"),
        ("{prefix}{stem!r}.mp4", "take no format"),
        ("{prefix}{stem:>10}.mp4", "take no format"),
        ("{prefix}{stem.mp4", "is not a template"),
    ],
)
def test_a_template_that_cannot_name_videos_is_refused(template: str, reason: str) -> None:
    with pytest.raises(InvalidVideoKeyTemplate, match=re.escape(reason)):
        VideoKeyTemplate(template)


def test_a_bad_template_fails_the_cold_start_with_its_reason() -> None:
    env = {
        "JOBS_TABLE": "t",
        "OUTPUT_BUCKET": "o",
        "WEBHOOK_TOKEN_SECRET": "s",
        "EVENT_BUS_NAME": "default",
        "FAL_JWKS_URL": "https://rest.fal.ai/.well-known/jwks.json",
        "MEDIA_HOSTS": "fal.media",
        "FAL_USER_ID": "github|1",
        "INPUT_PREFIX": "uploads/",
        "VIDEO_KEY_TEMPLATE": "{prefix}{stem}.mov",
    }
    with pytest.raises(ConfigurationError, match=r"VIDEO_KEY_TEMPLATE: .* must end with \.mp4"):
        WebhookSettings.from_environment(env)


def test_the_default_template_applies_when_none_is_set() -> None:
    env = {
        "JOBS_TABLE": "t",
        "OUTPUT_BUCKET": "o",
        "WEBHOOK_TOKEN_SECRET": "s",
        "EVENT_BUS_NAME": "default",
        "FAL_JWKS_URL": "https://rest.fal.ai/.well-known/jwks.json",
        "MEDIA_HOSTS": "fal.media",
        "FAL_USER_ID": "github|1",
        "INPUT_PREFIX": "uploads/",
    }
    assert WebhookSettings.from_environment(env).video_key_template.template == DEFAULT_TEMPLATE


# --- which upload is newer ----------------------------------------------------------------------


def order(sequencer: str | None, created_at: str, key: str = "uploads/a.png") -> UploadOrder:
    return UploadOrder(source_key=key, sequencer=sequencer, created_at=created_at)


def test_for_one_key_the_sequencer_decides_not_the_time_the_pipeline_saw_it() -> None:
    # The later PUT reached the pipeline first (a retried event, a slow queue).
    later_put = order("0055AED6DCD90281E6", "2026-12-01T10:00:00.000+00:00")
    earlier_put = order("0055AED6DCD90281E5", "2026-12-01T10:00:05.000+00:00")

    assert later_put.is_newer_than(earlier_put)
    assert not earlier_put.is_newer_than(later_put)


def test_sequencers_of_different_lengths_compare_once_padded() -> None:
    assert order("100", "t").is_newer_than(order("FF", "t"))
    assert not order("0FF", "t").is_newer_than(order("100", "t"))


def test_uploads_of_different_keys_are_ordered_by_when_they_were_taken() -> None:
    # a.png and a.jpg both want videos/a.mp4: their sequencers are not comparable.
    png = order("FFFF", "2026-12-01T10:00:00.000+00:00", key="uploads/a.png")
    jpg = order("0001", "2026-12-01T10:00:01.000+00:00", key="uploads/a.jpg")

    assert jpg.is_newer_than(png)


def test_without_a_sequencer_the_time_decides() -> None:
    assert order(None, "2026-12-01T10:00:01.000+00:00").is_newer_than(
        order("AA", "2026-12-01T10:00:00.000+00:00")
    )


def test_a_tie_keeps_the_video_already_there() -> None:
    assert not order("AA", "t").is_newer_than(order("AA", "t"))
