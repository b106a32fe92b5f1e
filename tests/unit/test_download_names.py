"""`pika-pipeline download` names a video after its upload: the name never leaves the folder it is
downloaded into, on Windows neither (drives, NTFS streams, reserved device names)."""

from __future__ import annotations

import ntpath
from pathlib import PurePosixPath, PureWindowsPath

import pytest

from pika_pipeline_cli.main import video_file_name

JOB = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
FOLDERS = (PureWindowsPath("C:/Users/me/videos"), PurePosixPath("/home/me/videos"))


def test_a_plain_key_gives_its_stem_and_the_job() -> None:
    assert video_file_name("uploads/beach.png", JOB) == "beach-0f1e2d3c.mp4"


@pytest.mark.parametrize(
    "key",
    [
        "uploads/C:evil.png",  # drive-relative on Windows: C:evil-....mp4 is outside the folder
        "uploads/x.png:ads.png",  # an NTFS alternate data stream of x.png
        "uploads/..",
        "uploads/../../etc/passwd.png",
        "uploads/..\\..\\Windows\\evil.png",
        "uploads/\\\\server\\share\\evil.png",
        "uploads/CON.png",
        "uploads/nul",
        "uploads/LPT1.png",
        "uploads/com9.tar.png",
        'uploads/a<b>c|d?e*f"g.png',
        "uploads/trailing. .png",
        "uploads/ .png",
        "uploads/\x00\x1f.png",
        "uploads/",
        "",
    ],
)
def test_any_key_gives_a_plain_name_inside_the_folder(key: str) -> None:
    name = video_file_name(key, JOB)

    assert name.endswith(f"-{JOB[:8]}.mp4")
    assert all(c.isalnum() or c in "._-" for c in name), name
    assert not name.startswith("."), name
    for folder in FOLDERS:
        target = folder / name
        assert target.parent == folder, (key, name)
        assert target.name == name
    assert PureWindowsPath(name).drive == ""
    assert not ntpath.isreserved(name)
    stem = name.split(".", 1)[0].split("-", 1)[0].upper()
    assert stem not in {"CON", "PRN", "AUX", "NUL", "COM9", "LPT1"}, name


def test_a_very_long_key_gives_a_name_windows_can_create() -> None:
    assert len(video_file_name("uploads/" + "a" * 1000 + ".png", JOB)) <= 120


def test_letters_of_other_scripts_are_kept() -> None:
    assert video_file_name("uploads/été à Zürich.png", JOB) == "été_à_Zürich-0f1e2d3c.mp4"


@pytest.mark.parametrize("stem", ["sku-123", "sku 123", "été à Zürich (2)", "a+b=c, d's #1"])
def test_a_video_at_its_readable_key_is_saved_under_that_name_as_is(stem: str) -> None:
    name = video_file_name(f"uploads/shop/{stem}.png", JOB, f"videos/shop/spring/{stem}.mp4")

    assert name == f"{stem}.mp4"


def test_a_video_moved_aside_for_a_newer_upload_keeps_the_job_in_its_name() -> None:
    staged = f"videos/{JOB}/764cabcf-b745-4b3e-ae38-1200304cf45b.mp4"

    assert video_file_name("uploads/shop/sku-123.png", JOB, staged) == "sku-123-0f1e2d3c.mp4"


@pytest.mark.parametrize(
    "video_key",
    [
        "videos/C:evil.mp4",
        "videos/x.png:ads.mp4",
        "videos/..\\..\\Windows\\evil.mp4",
        "videos/CON.mp4",
        "videos/con .x.mp4",
        "videos/ .mp4",
        "videos/...mp4",
        "videos/.. .mp4",
        'videos/a<b>c|d?e*f"g.mp4',
        "videos/\x00\x1f.mp4",
    ],
)
def test_any_readable_key_gives_a_name_that_stays_inside_the_folder(video_key: str) -> None:
    name = video_file_name("uploads/x.png", JOB, video_key)

    assert name.endswith(".mp4")
    assert not set(name) & set('<>:"/\\|?*'), name
    assert name.isprintable(), name
    assert not name.startswith((".", " ")), name
    for folder in FOLDERS:
        assert (folder / name).parent == folder, (video_key, name)
    assert PureWindowsPath(name).drive == ""
    assert not ntpath.isreserved(name)
