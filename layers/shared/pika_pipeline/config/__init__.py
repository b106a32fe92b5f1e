"""Each function's configuration, read from its environment once and validated at cold start.

A missing or malformed variable fails the cold start with a message naming it, instead of a
function that half-works on a silent default. Optional knobs have documented defaults here.
Each function reads exactly the settings its object graph uses: what the submit path needs
(submit.SubmitServiceSettings) and what recording fal's result needs (recorder.RecorderSettings)
are groups the functions' settings are made of. A setting has one name from the template's
parameter to the code: ``ReconcileAfterSeconds`` is ``RECONCILE_AFTER_SECONDS`` is
``reconcile_after_seconds``.

Plain dataclasses rather than pydantic: the webhook's cold start races fal's 15 s delivery
timeout, and pydantic's import and model building were most of its cost (docs/PERFORMANCE.md).
One module per group, imported by name: building a dataclass compiles its methods, so a function
builds only its own classes (the webhook skipped ~7 ms of other functions' settings).
"""
