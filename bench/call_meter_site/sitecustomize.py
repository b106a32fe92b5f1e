"""Python imports this at the start of every process with this directory on its path. The
benchmark starts the local stack with it on the functions' path (``bench/__main__.py``),
so each function process counts its network calls before any client exists."""

from __future__ import annotations

from bench.call_meter import install_from_environment

install_from_environment()
