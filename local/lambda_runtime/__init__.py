"""A small Lambda runtime for the local stack: real SQS batch events and Function URL events.

Each function runs in its own process with the environment the template gives it, importing its
``app.py`` the way Lambda does (function code first, then the layer), so the webhook process
never even has fal_client imported.
"""
