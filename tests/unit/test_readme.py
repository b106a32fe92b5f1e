"""The documentation tells a user about every status a job can be in and every error code it can
end with: the code's enums are the source of truth, the docs must keep up with them. The README
stays a newcomer's first read: the two commands, and links that lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

from local.template import REPO_ROOT
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES, JobStatus

README = REPO_ROOT / "README.md"
DESIGN = REPO_ROOT / "docs" / "DESIGN.md"
OPERATIONS = REPO_ROOT / "docs" / "OPERATIONS.md"


def _section(doc: Path, heading: str) -> str:
    """The text under a Markdown heading, up to the next heading of any level."""
    text = doc.read_text()
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(r"^#{1,6} ", text[start:], flags=re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


def _error_code_table() -> dict[str, str]:
    """Each code of the error-code table, with the status its row gives."""
    text = OPERATIONS.read_text()
    header = "| error code | status | what to do |"
    table = text[text.index(header) :].split("\n\n", 1)[0].splitlines()[2:]
    rows: dict[str, str] = {}
    for line in table:
        codes, status, advice = (cell.strip() for cell in line.strip("|").split(" | ", 2))
        assert advice, line
        for code in re.findall(r"`(\w+)`", codes):
            assert code not in rows, f"{code} has two rows"
            rows[code] = status
    return rows


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_error_code_has_a_row_saying_what_to_do() -> None:
    rows = _error_code_table()

    assert set(rows) == {code.value for code in ErrorCode}


def test_each_error_code_row_names_a_final_status() -> None:
    for code, status in _error_code_table().items():
        assert status in {s.value for s in TERMINAL_STATUSES}, code


def test_the_status_section_shows_every_job_status() -> None:
    section = _section(DESIGN, "### Job statuses")

    for status in JobStatus:
        assert re.search(rf"\b{status.value}\b", section), status


def test_the_readme_gives_the_two_commands() -> None:
    commands = _section(README, "## The two commands")

    assert "make demo " in commands
    assert "make test " in commands


def test_every_relative_link_in_the_docs_leads_to_a_file_and_heading_that_exist() -> None:
    for doc in (README, *sorted((REPO_ROOT / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            assert linked.is_file(), f"{doc.name} links to {target}"
            if anchor:
                headings = re.findall(r"^#{1,6} (.+)$", linked.read_text(), flags=re.MULTILINE)
                assert anchor in {_anchor(h) for h in headings}, f"{doc.name} links to {target}"
