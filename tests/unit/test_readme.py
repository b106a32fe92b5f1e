"""README.md tells a user about every status a job can be in and every error code it can end
with: the code's enums are the source of truth, the README must keep up with them."""

from __future__ import annotations

import re

from local.template import REPO_ROOT
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES, JobStatus

README = (REPO_ROOT / "README.md").read_text()


def _section(heading: str) -> str:
    """The text under a Markdown heading, up to the next heading of any level."""
    start = README.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(r"^#{1,6} ", README[start:], flags=re.MULTILINE)
    return README[start : start + following.start()] if following else README[start:]


def _error_code_table() -> dict[str, str]:
    """Each code of the error-code table, with the status its row gives."""
    header = "| error code | status | what to do |"
    table = README[README.index(header) :].split("\n\n", 1)[0].splitlines()[2:]
    rows: dict[str, str] = {}
    for line in table:
        codes, status, advice = (cell.strip() for cell in line.strip("|").split(" | ", 2))
        assert advice, line
        for code in re.findall(r"`(\w+)`", codes):
            assert code not in rows, f"{code} has two rows"
            rows[code] = status
    return rows


def test_every_error_code_has_a_row_saying_what_to_do() -> None:
    rows = _error_code_table()

    assert set(rows) == {code.value for code in ErrorCode}


def test_each_error_code_row_names_a_final_status() -> None:
    for code, status in _error_code_table().items():
        assert status in {s.value for s in TERMINAL_STATUSES}, code


def test_the_status_section_shows_every_job_status() -> None:
    section = _section("### Job statuses")

    for status in JobStatus:
        assert re.search(rf"\b{status.value}\b", section), status
