"""pika-pipeline benchmarks: each figure measured next to its baseline, in the same run.

Run from the repository root with ``python -m bench`` (``make bench``), or ``python -m bench
--quick`` for a fast smoke run with tiny sizes and fewer repetitions. It prints a table and writes
``docs/PERFORMANCE.md`` (``--output`` to write elsewhere).

Modules, one per figure: ``cold_start`` (handler import + init vs a boto3 + Logger handler),
``network_calls`` (AWS and fal calls per job through the local stack's counters),
``video_copy`` (webhook copy memory and throughput), ``submit_batch`` (a batch of 10 vs 1),
``package_size`` (``sam build`` output), ``cost`` (AWS cost per video) and ``report`` (the table
and the document). The ``*_child`` modules are what the fresh subprocesses run.
"""
