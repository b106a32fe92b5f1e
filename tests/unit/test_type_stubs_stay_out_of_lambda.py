"""The boto3 type stubs are a dev dependency: deployed code may name them only for mypy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from local.template import REPO_ROOT

DEPLOYED = [
    *sorted((REPO_ROOT / "layers" / "shared" / "pika_pipeline").rglob("*.py")),
    *sorted((REPO_ROOT / "functions").rglob("*.py")),
]
STUB_PACKAGES = ("mypy_boto3_", "boto3_stubs", "botocore_stubs", "types_boto3")


def _runtime_stub_imports(tree: ast.AST) -> list[str]:
    """Stub imports that run when the module is imported (outside ``if TYPE_CHECKING:``)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith(STUB_PACKAGES))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(STUB_PACKAGES):
            found.append(str(node.module))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_the_check_finds_a_stub_imported_at_runtime() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mypy_boto3_s3.client import S3Client\n"
        "def f() -> None:\n    import mypy_boto3_sqs\n"
    )
    assert _runtime_stub_imports(tree) == ["mypy_boto3_sqs"]


@pytest.mark.parametrize("path", DEPLOYED, ids=lambda p: str(Path(p).relative_to(REPO_ROOT)))
def test_deployed_code_imports_type_stubs_only_for_type_checking(path: Path) -> None:
    assert _runtime_stub_imports(ast.parse(path.read_text())) == []
