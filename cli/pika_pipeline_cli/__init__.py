"""pika-pipeline: the command line for people and scripts that use a deployed or local pipeline."""
