"""Which per-upload callback URL (``callback-url`` metadata) the pipeline accepts, before paying.

Checked at submit, again at each delivery (where DNS is asked and the address pinned): only
https, only hosts listed in ``CallbackHosts`` (or their subdomains), no query string and no
userinfo. The URL goes into the job record and the completion event, so it must never carry a
credential: receivers authenticate deliveries by their Standard Webhooks signature instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pika_pipeline.errors import UploadRejected, UrlNotAllowed
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.net.pinned_https import check_url

METADATA_KEY = "callback-url"
MAX_URL_LENGTH = 2048


def callback_url_from_metadata(
    metadata: Mapping[str, str], *, allowed_hosts: Sequence[str]
) -> str | None:
    """The upload's callback URL, None when it names none; raises UploadRejected
    ``callback_not_allowed`` for any callback CallbackHosts does not allow (all, when empty)."""
    values = {key.lower(): value for key, value in metadata.items()}
    url = (values.get(METADATA_KEY) or "").strip()
    if not url:
        return None
    if not allowed_hosts:
        raise _rejected("per-upload callbacks are off (CallbackHosts is empty)")
    if len(url) > MAX_URL_LENGTH:
        raise _rejected(f"the callback URL is longer than {MAX_URL_LENGTH} characters")
    try:
        checked = check_url(url, allowed_hosts, what="callback URL", setting="CallbackHosts")
    except UrlNotAllowed as exc:
        raise _rejected(str(exc)) from None
    if "?" in checked.target:
        raise _rejected("the callback URL carries a query string (it would be stored and logged)")
    return url


def _rejected(reason: str) -> UploadRejected:
    return UploadRejected(
        ErrorCode.CALLBACK_NOT_ALLOWED,
        f"The callback-url is not accepted: {reason}; nothing was submitted.",
    )
