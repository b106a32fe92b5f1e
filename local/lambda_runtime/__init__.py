"""A small Lambda runtime for the local stack: real SQS batch events and Function URL events.

Each function runs in processes of its own with the environment the template gives it, one
invocation at a time per worker process, importing its ``app.py`` the way Lambda does (function
code first, then the layer), so the webhook's processes never even have fal_client imported.
"""
