"""``python -m pika_pipeline_cli`` runs the same command as the ``pika-pipeline`` entry point."""

from pika_pipeline_cli.main import main

raise SystemExit(main())
