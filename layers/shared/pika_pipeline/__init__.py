"""pika_pipeline: the domain logic shared by the pipeline's Lambda functions.

The handlers in ``functions/`` stay thin; everything they do is here, in modules named after what
they are: ``jobs`` (statuses and the one table of their transitions), ``uploads`` (which object
an event names), ``video_request`` (what the uploader asked for), adapters named after the
outside system (``job_repository``, ``fal_gateway``, ``video_store``, ``webhook_verifier``,
``job_events``) and the services that tie them together (``submit_service`` with
``submit_batch``, ``webhook_service``, ``job_results`` which the webhook and the ``reconciler``
share).
"""
