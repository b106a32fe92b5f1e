"""The one composition root: each handler's object graph, built from its settings.

Nothing here runs at import: a handler builds its graph on its first invocation, so tests and
tools can import handlers without an environment. What only some handlers use is imported inside
their builders: the webhook never loads the submit path, nor the submit function the Ed25519
verifier (cryptography), which would cost every cold start ~10-15 ms (``make bench``).
fal_client and pydantic load later still, when first needed (``fal.on_demand``, SubmitService).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pika_pipeline.aws.clients import events_client, jobs_table, s3_client
from pika_pipeline.aws.secrets import read_secret
from pika_pipeline.jobs.events import JobEvents
from pika_pipeline.jobs.repository import JobRepository

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from mypy_boto3_dynamodb.service_resource import Table

    from pika_pipeline.config.environment import CommonSettings
    from pika_pipeline.config.notifier import NotifierSettings
    from pika_pipeline.config.reconciler import ReconcilerSettings
    from pika_pipeline.config.recorder import RecorderSettings, WebhookSettings
    from pika_pipeline.config.submit import SubmitServiceSettings, SubmitSettings
    from pika_pipeline.dispatch.control import OperatorItems
    from pika_pipeline.dispatch.dispatcher import Dispatcher
    from pika_pipeline.dispatch.slots import Slots
    from pika_pipeline.fal.gateway import FalGateway
    from pika_pipeline.notify.notifier import Notifier
    from pika_pipeline.reconcile.reconciler import Reconciler
    from pika_pipeline.results.recorder import ResultRecorder
    from pika_pipeline.spend.budget import BudgetGate
    from pika_pipeline.spend.ledger import SpendLedger
    from pika_pipeline.submit.batch import SubmitBatch
    from pika_pipeline.submit.service import SubmitService
    from pika_pipeline.webhook.service import WebhookService


def submit_batch(settings: SubmitSettings) -> SubmitBatch:
    from pika_pipeline.aws.clients import sqs_client
    from pika_pipeline.fal.on_demand import fal_gateway_on_demand
    from pika_pipeline.submit.batch import SubmitBatch, record_pool

    repository = _repository(settings)
    service = _submit_service(
        settings, repository, _events(settings), fal_gateway_on_demand(settings)
    )
    pool = record_pool()
    return SubmitBatch(
        service=service,
        dispatcher=_dispatcher(settings, repository, service, executor=pool),
        pool=pool,
        sqs=sqs_client(),
        submit_max_attempts=settings.submit_max_attempts,
        submit_retry_base_seconds=settings.submit_retry_base_seconds,
    )


def webhook_service(settings: WebhookSettings) -> WebhookService:
    from pika_pipeline.aws.http_fetch import fetch_bytes
    from pika_pipeline.webhook.service import WebhookService
    from pika_pipeline.webhook.verifier import JwksKeys, WebhookVerifier

    repository = _repository(settings)
    return WebhookService(
        repository=repository,
        verifier=WebhookVerifier(
            JwksKeys(settings.fal_jwks_url, fetch_bytes),
            expected_user_id=settings.fal_user_id,
            tolerance_seconds=settings.timestamp_tolerance_seconds,
        ),
        recorder=_recorder(
            settings,
            repository,
            _events(settings),
            _ledger(settings.control_table, settings) if settings.control_table else None,
        ),
        token_key=_token_key(settings),
        max_body_bytes=settings.max_body_bytes,
    )


def reconciler(settings: ReconcilerSettings) -> Reconciler:
    from pika_pipeline.batches.announcer import BatchAnnouncer
    from pika_pipeline.dispatch.control import PauseSwitch
    from pika_pipeline.dispatch.order import WaitingJobs
    from pika_pipeline.dispatch.queue_report import QueueReport
    from pika_pipeline.fal.on_demand import fal_gateway_on_demand, fal_history_on_demand
    from pika_pipeline.jobs.event_outbox import EventOutbox
    from pika_pipeline.jobs.open_jobs import OpenJobs
    from pika_pipeline.reconcile.lost_answers import LostAnswers
    from pika_pipeline.reconcile.reconciler import Reconciler
    from pika_pipeline.submit.input_objects import InputObjects

    repository = _repository(settings)
    events = _events(settings)
    fal = fal_gateway_on_demand(settings)
    submit = _submit_service(settings, repository, events, fal)
    control = _control(settings)
    return Reconciler(
        open_jobs=OpenJobs(_table(settings)),
        repository=repository,
        fal=fal,
        recorder=_recorder(settings, repository, events, _ledger(settings.control_table, settings)),
        submit=submit,
        events=events,
        reconcile_after_seconds=settings.reconcile_after_seconds,
        job_deadline_seconds=settings.job_deadline_seconds,
        dispatcher=_dispatcher(settings, repository, submit),
        queue_report=QueueReport(
            waiting=WaitingJobs(_table(settings)),
            slots=_slots(settings),
            pause=PauseSwitch(control),
            repository=repository,
            control=control,
            budget=_budget_gate(settings),
        ),
        batches=BatchAnnouncer(
            control=control, events=events, quiet_seconds=settings.batch_quiet_seconds
        ),
        outbox=EventOutbox(_table(settings)),
        event_grace_seconds=settings.event_grace_seconds,
        lost_answers=LostAnswers(
            history=fal_history_on_demand(settings),
            image_url=InputObjects(
                s3_client(), presign_expires_seconds=settings.presign_expires_seconds
            ).presigned_url,
            jobs_with_request=repository.jobs_with_request,
        ),
    )


def _control(settings: SubmitServiceSettings) -> Callable[[], Table]:
    return lambda: jobs_table(settings.control_table)


def _slots(settings: SubmitServiceSettings) -> Slots:
    from pika_pipeline.dispatch.slots import Slots

    return Slots(
        control=_control(settings),
        jobs=_table(settings),
        count=settings.dispatch_slots,
        retention_days=settings.job_retention_days,
    )


def _dispatcher(
    settings: SubmitServiceSettings,
    repository: JobRepository,
    submit: SubmitService,
    executor: Executor | None = None,
) -> Dispatcher:
    from pika_pipeline.dispatch.control import OperatorItems, PauseSwitch
    from pika_pipeline.dispatch.dispatcher import Dispatcher
    from pika_pipeline.dispatch.order import WaitingJobs

    control = _control(settings)
    # A fill reads the pause switch and the budget's limits with its slots; both share one cache.
    items = OperatorItems(control)
    return Dispatcher(
        slots=_slots(settings),
        waiting=WaitingJobs(_table(settings)),
        pause=PauseSwitch(control, items=items),
        repository=repository,
        submit=submit,
        claim_seconds=settings.submit_claim_seconds,
        reconcile_after_seconds=settings.reconcile_after_seconds,
        budget=_budget_gate(settings, items=items),
        executor=executor,
    )


def _ledger(control_table: str, settings: CommonSettings) -> SpendLedger:
    from pika_pipeline.spend.ledger import SpendLedger

    return SpendLedger(control=lambda: jobs_table(control_table), jobs=_table(settings))


def _budget_gate(
    settings: SubmitServiceSettings, *, items: OperatorItems | None = None
) -> BudgetGate:
    from pika_pipeline.spend.budget import BudgetGate, BudgetLimits, BudgetLimitsReader

    def price_of(item: dict[str, Any]) -> Decimal:
        # A job queued before jobs recorded their price: this deployment's price for it.
        return settings.price_usd(
            resolution=item.get("resolution", settings.default_resolution),
            duration=int(item.get("duration", settings.default_duration)),
        )

    return BudgetGate(
        limits=BudgetLimitsReader(
            _control(settings),
            defaults=BudgetLimits(
                daily_usd=settings.daily_budget_usd, monthly_usd=settings.monthly_budget_usd
            ),
            items=items,
        ),
        ledger=_ledger(settings.control_table, settings),
        jobs=_table(settings),
        price_of=price_of,
    )


def notifier(settings: NotifierSettings) -> Notifier:
    from datetime import UTC, datetime
    from urllib.parse import urlsplit

    import urllib3

    from pika_pipeline.aws.clients import sqs_client
    from pika_pipeline.jobs.event_outbox import EventOutbox
    from pika_pipeline.notify.delivery import WebhookSender
    from pika_pipeline.notify.notifier import Notifier

    s3 = s3_client()
    # NotifyUrl's host is the operator's own choice; callbacks may reach CallbackHosts only.
    notify_host = (urlsplit(settings.notify_url).hostname or "") if settings.notify_url else ""
    allowed = tuple(filter(None, (*settings.callback_hosts, notify_host.lower())))

    def presign(bucket: str, key: str) -> str:
        url: str = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=settings.notify_download_url_seconds,
        )
        return url

    return Notifier(
        sqs=sqs_client(),
        sender=WebhookSender(
            allowed_hosts=allowed,
            timeout=urllib3.Timeout(
                connect=settings.notify_connect_timeout_seconds,
                read=settings.notify_read_timeout_seconds,
            ),
        ),
        secret=lambda: read_secret(settings.notify_signing_secret),
        presign=presign,
        acknowledge=EventOutbox(_table(settings)).acknowledge,
        notify_url=settings.notify_url,
        retry_delays=settings.notify_retry_delays,
        max_attempts=settings.notify_max_attempts,
        now=lambda: datetime.now(UTC),
    )


def _submit_service(
    settings: SubmitServiceSettings,
    repository: JobRepository,
    events: JobEvents,
    fal: Callable[[], FalGateway],
) -> SubmitService:
    from pika_pipeline.dispatch.order import FairShare
    from pika_pipeline.submit.input_objects import InputObjects
    from pika_pipeline.submit.service import SubmitService

    return SubmitService(
        fair_share=FairShare(_control(settings)),
        settings=settings,
        repository=repository,
        images=InputObjects(s3_client(), presign_expires_seconds=settings.presign_expires_seconds),
        fal=fal,
        token_key=_token_key(settings),
        events=events,
        ledger=_ledger(settings.control_table, settings),
    )


def _recorder(
    settings: RecorderSettings,
    repository: JobRepository,
    events: JobEvents,
    ledger: SpendLedger | None = None,
) -> ResultRecorder:
    from pika_pipeline.results.recorder import ResultRecorder
    from pika_pipeline.results.video_placement import VideoPlacement
    from pika_pipeline.results.video_store import VideoStore

    store = VideoStore(
        s3=s3_client(),
        bucket=settings.output_bucket,
        allowed_hosts=settings.media_hosts,
        max_bytes=settings.max_video_bytes,
    )
    return ResultRecorder(
        repository=repository,
        store=store,
        events=events,
        placement=VideoPlacement(
            store=store,
            repository=repository,
            output_prefix=settings.output_prefix,
            input_prefix=settings.input_prefix,
            template=settings.video_key_template,
        ),
        ledger=ledger,
    )


def _table(settings: CommonSettings) -> Callable[[], Table]:
    # A factory, not a Table: records run on threads, and boto3 resources are not thread-safe.
    return lambda: jobs_table(settings.jobs_table)


def _repository(settings: CommonSettings) -> JobRepository:
    # Every function that moves jobs has the control table, where the batches' counters live.
    control_table = str(getattr(settings, "control_table", "") or "")
    return JobRepository(
        _table(settings),
        retention_days=settings.job_retention_days,
        control=(lambda: jobs_table(control_table)) if control_table else None,
    )


def _events(settings: CommonSettings) -> JobEvents:
    return JobEvents(events_client(), settings.event_bus_name)


def _token_key(settings: CommonSettings) -> Callable[[], str]:
    return lambda: read_secret(settings.webhook_token_secret)
