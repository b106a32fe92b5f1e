"""Finds at fal the requests a crashed claim made whose answers were lost (a submit killed after
fal accepted it, or an answer lost to a timeout), so the reconciler adopts them instead of paying
for another one.

A request is the job's when fal's history lists it at the job's endpoint since the claim began
and its ``image_url`` names the job's image: the same host and path (bucket and key) and the same
S3 ``versionId``. The rest of the presigned URL (its signature, its date) is minted per attempt
and tells nothing. A request another job already recorded is never taken.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from pika_pipeline.fal.pika import endpoint_of
from pika_pipeline.submit.uploads import Upload

if TYPE_CHECKING:
    from pika_pipeline.fal.request_history import FalRequestHistory, PastRequest
    from pika_pipeline.jobs.job import Job

# fal's clock and ours may differ a little: the window opens this much before the claim.
CLOCK_MARGIN = timedelta(seconds=120)
# The claim's start: the dispatch that took the slot (a take-over keeps it), else the job's birth.
_CLAIM_STARTS = ("dispatched_at", "created_at")


def same_image(candidate: str, expected: str) -> bool:
    """Whether two presigned URLs name the same object version (never the same signature)."""
    a, b = urlsplit(candidate), urlsplit(expected)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path) and parse_qs(a.query).get(
        "versionId"
    ) == parse_qs(b.query).get("versionId")


def requests_for_image(
    history: list[PastRequest], image_url: str, *, taken_by_another: Callable[[str], bool]
) -> list[PastRequest]:
    """The requests of ``history`` made for ``image_url``, earliest first."""
    mine = [
        past
        for past in history
        if past.image_url
        and same_image(past.image_url, image_url)
        and not taken_by_another(past.request_id)
    ]
    return sorted(mine, key=lambda past: past.sent_at)


def claim_started(job: Job) -> datetime | None:
    for name in _CLAIM_STARTS:
        if value := job.item.get(name):
            return datetime.fromisoformat(str(value))
    return None


class LostAnswers:
    def __init__(
        self,
        *,
        history: Callable[[], FalRequestHistory],
        image_url: Callable[[Upload], str],
        jobs_with_request: Callable[[str], set[str]],
    ) -> None:
        """``image_url`` mints the URL a submit would send for an upload (a presign: no network
        call); ``jobs_with_request`` names the jobs that recorded a request id."""
        self._history = history
        self._image_url = image_url
        self._jobs_with_request = jobs_with_request

    def find(self, job: Job) -> list[str]:
        """The ids of the job's requests fal received since its claim began, earliest first;
        [] when there is none. Raises FalHistoryUnavailable when fal cannot say."""
        started = claim_started(job)
        if started is None:
            return []
        history = self._history().since(endpoint_of(job.item), started - CLOCK_MARGIN)
        found = requests_for_image(
            history,
            self._image_url(Upload.of_job(job.item)),
            taken_by_another=lambda request_id: bool(
                self._jobs_with_request(request_id) - {job.job_id}
            ),
        )
        return [past.request_id for past in found]
