"""fal's error bodies made readable (no fal_client import: the webhook uses this too)."""

from __future__ import annotations


def describe_detail(detail: object) -> str:
    """fal's 422 ``detail`` is a list of ``{loc, msg, type}``; turn it into one readable line."""
    if isinstance(detail, list):
        parts = []
        for problem in detail:
            if isinstance(problem, dict):
                loc = [str(p) for p in problem.get("loc", []) if p != "body"]
                parts.append(f"{'.'.join(loc) or 'input'}: {problem.get('msg', 'invalid')}")
            else:
                parts.append(str(problem))
        return "; ".join(parts) or "fal rejected the input"
    return str(detail)
