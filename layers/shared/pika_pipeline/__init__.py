"""pika_pipeline: the domain logic shared by the pipeline's Lambda functions.

The handlers in ``functions/`` stay thin; everything they do is here, in modules named after what
they are: ``jobs`` (statuses and their transitions), ``uploads`` (which object an event names),
``video_request`` (what the uploader asked for), adapters named after the outside system
(``job_repository``, ``fal_gateway``, ``video_store``, ``webhook_verifier``) and the two services
that tie them together (``submit_service``, ``webhook_service``).
"""
