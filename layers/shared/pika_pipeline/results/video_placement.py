"""Where a job's video is written: its readable key (VideoKeyTemplate), unless a newer upload of
that key holds it; every completed job keeps exactly one video object.

The usual case costs nothing over a plain write: the video is streamed to its readable key with
``If-None-Match: *``. Only when an object is already there (a re-upload, or a try of this job that
stopped before recording it) is the video streamed to its staging key instead, and the two
uploads compared: the newer one's video ends at the readable key, the older one's at its own
staging key (moved aside there, its record following). Each server-side copy is conditional on
the ETag read just before, so two deliveries racing for one key cannot both win, whatever order
fal finished them in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import unquote

from pika_pipeline.errors import JobConflict, VideoUnavailable
from pika_pipeline.observability import logger
from pika_pipeline.results.video_keys import UploadOrder, staging_key
from pika_pipeline.results.video_store import MAX_COPY_BYTES, KeyTaken, StoredObject, StoredVideo

if TYPE_CHECKING:
    from pika_pipeline.jobs.job import Job
    from pika_pipeline.jobs.repository import JobRepository
    from pika_pipeline.results.video_keys import VideoKeyTemplate
    from pika_pipeline.results.video_store import VideoStore

# Each lost try means another delivery wrote the readable key between our HEAD and our copy.
_SETTLE_TRIES = 4


@dataclass(frozen=True)
class PlacedVideo:
    """Where the job's video is, and the fal request it came from: this delivery's, or (when a
    try of the same job had already written the readable key) that try's."""

    stored: StoredVideo
    request_id: str


def upload_order(job: Job) -> UploadOrder:
    sequencer = job.item.get("source_sequencer")
    return UploadOrder(
        source_key=str(job.item.get("source_key", "")),
        sequencer=str(sequencer) if sequencer else None,
        created_at=str(job.item.get("created_at", "")),
    )


class VideoPlacement:
    def __init__(
        self,
        *,
        store: VideoStore,
        repository: JobRepository,
        output_prefix: str,
        input_prefix: str,
        template: VideoKeyTemplate,
    ) -> None:
        self._store = store
        self._jobs = repository
        self._output_prefix = output_prefix
        self._input_prefix = input_prefix
        self._template = template

    def readable_key(self, job: Job) -> str | None:
        return self._template.key_for(
            source_key=str(job.item.get("source_key", "")),
            input_prefix=self._input_prefix,
            output_prefix=self._output_prefix,
            job_id=job.job_id,
        )

    def store(
        self,
        job: Job,
        *,
        request_id: str,
        url: str,
        expected_size: int | None,
        metadata: dict[str, str],
    ) -> PlacedVideo:
        """Streams the video into the output bucket; raises what VideoStore.copy raises."""
        readable = self.readable_key(job)
        if readable is not None:
            try:
                stored = self._store.copy(
                    url,
                    key=readable,
                    expected_size=expected_size,
                    metadata=metadata,
                    only_if_absent=True,
                )
                return PlacedVideo(stored, request_id)
            except KeyTaken:
                logger.info("The readable key is taken", extra={"video_key": readable})
        staged = self._store.copy(
            url,
            key=staging_key(self._output_prefix, job.job_id, request_id),
            expected_size=expected_size,
            metadata=metadata,
        )
        if readable is None or staged.size > MAX_COPY_BYTES:
            return PlacedVideo(staged, request_id)
        try:
            return self._settle(job, staged, readable, request_id)
        except VideoUnavailable:
            raise  # nothing is left stored: fal's retry, or the reconciler, records it later
        except Exception as exc:  # the staged video is whole: the job completes with it there
            logger.warning("The video stays at its staging key", extra={"reason": repr(exc)})
            return PlacedVideo(staged, request_id)

    def _settle(self, job: Job, staged: StoredVideo, readable: str, request_id: str) -> PlacedVideo:
        """The staged video moves to ``readable`` if its upload is newer than the holder's."""
        for _ in range(_SETTLE_TRIES):
            holder = self._store.head(readable)
            if holder is None:  # freed meanwhile
                if self._store.copy_within(staged.key, readable, if_none_match=True):
                    return self._moved(staged, readable, request_id)
                continue
            holder_id = holder.metadata.get("job-id")
            if holder_id == job.job_id:
                return self._own_video_kept(staged, readable, holder, request_id)
            holder_job = self._jobs.get(holder_id) if holder_id else None
            if holder_job is not None and holder_job.awaits_result:
                # Its delivery wrote the key and has not recorded it yet (or stopped before it
                # did, and fal's retry will): the key cannot change hands until it has.
                if not upload_order(job).is_newer_than(upload_order(holder_job)):
                    return PlacedVideo(staged, request_id)
                self._store.delete(staged.key)
                raise VideoUnavailable(
                    "an older upload's video at the readable key is still being recorded"
                )
            if holder_job is not None and holder_job.item.get("output_key") == readable:
                if not upload_order(job).is_newer_than(upload_order(holder_job)):
                    logger.info("A newer upload holds the readable key; the video is staged")
                    return PlacedVideo(staged, request_id)
                if not self._move_aside(holder_job, readable, holder.etag):
                    continue
            # Older, moved aside; or a copy no record names (its job gone or ended otherwise, or
            # its record already moved aside by a try that stopped half-way): replaced.
            if self._store.copy_within(staged.key, readable, if_match=holder.etag):
                return self._moved(staged, readable, request_id)
        logger.warning("The readable key kept changing; the video is staged")
        return PlacedVideo(staged, request_id)

    def _moved(self, staged: StoredVideo, readable: str, request_id: str) -> PlacedVideo:
        self._store.delete(staged.key)
        return PlacedVideo(replace(staged, key=readable), request_id)

    def _own_video_kept(
        self, staged: StoredVideo, readable: str, holder: StoredObject, request_id: str
    ) -> PlacedVideo:
        """A try of this same job wrote the readable key and stopped before recording it (or a
        second request of the job, after a lost call, got there first): that video is kept,
        and this one, a copy of the same upload's result, is not."""
        self._store.delete(staged.key)
        kept_request = unquote(holder.metadata.get("fal-request-id", "")) or request_id
        return PlacedVideo(replace(staged, key=readable, size=holder.size), kept_request)

    def _move_aside(self, holder: Job, readable: str, etag: str) -> bool:
        """The older job's video leaves the readable key for its own staging key, and its record
        follows, so that replacing it never leaves that job without its video. False when the
        key or the record changed meanwhile (nothing is then left behind)."""
        request = holder.item.get("completed_request_id") or holder.item.get("request_id")
        aside = staging_key(self._output_prefix, holder.job_id, str(request or "video"))
        if not self._store.copy_within(readable, aside, source_etag=etag):
            return False
        try:
            self._jobs.move_video(holder.job_id, from_key=readable, to_key=aside)
        except JobConflict:
            now = self._jobs.get(holder.job_id)
            if now is None or now.item.get("output_key") != aside:
                self._store.delete(aside)
            return False
        return True
