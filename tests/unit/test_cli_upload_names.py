"""`pika-pipeline upload FOLDER` keys each image by its path under the folder, folder included:
the folder is the default batch, and subfolders' same-named images stay apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from pika_pipeline_cli.main import upload_names
from pika_pipeline_cli.resources import CliError


def _images(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"image")


def test_a_folders_images_keep_the_folder_and_its_subfolders(tmp_path: Path) -> None:
    _images(tmp_path, "catalog/cover.jpg", "catalog/shoes/1.jpg", "catalog/hats/1.jpg")
    _images(tmp_path, "catalog/notes.txt", "catalog/.cache/1.jpg", "catalog/._cover.jpg")

    names = upload_names([tmp_path / "catalog"])

    assert sorted(names.values()) == [
        "catalog/cover.jpg",
        "catalog/hats/1.jpg",
        "catalog/shoes/1.jpg",
    ]
    assert names[tmp_path / "catalog" / "shoes" / "1.jpg"] == "catalog/shoes/1.jpg"


def test_a_file_is_uploaded_under_its_own_name(tmp_path: Path) -> None:
    _images(tmp_path, "shoes/1.jpg")

    assert upload_names([tmp_path / "shoes" / "1.jpg"]) == {tmp_path / "shoes" / "1.jpg": "1.jpg"}


def test_the_current_folder_is_named_after_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _images(tmp_path, "spring/1.jpg")
    monkeypatch.chdir(tmp_path / "spring")

    assert list(upload_names([Path()]).values()) == ["spring/1.jpg"]


def test_two_images_that_would_share_a_key_are_refused_before_any_upload(tmp_path: Path) -> None:
    _images(tmp_path, "a/1.jpg", "b/1.jpg")

    with pytest.raises(CliError) as refused:
        upload_names([tmp_path / "a" / "1.jpg", tmp_path / "b" / "1.jpg"])

    assert str(tmp_path / "a" / "1.jpg") in str(refused.value)  # the user sees which ones
    assert str(tmp_path / "b" / "1.jpg") in str(refused.value)
