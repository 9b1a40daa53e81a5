"""Sources read real files written here: images of every flavour, corrupt files, videos, lists, streams."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.inference.conftest import colour_image, write_video
from twdeploy.errors import TwdeployError
from twdeploy.inference.sources import Frame, Skipped, StreamSource, open_source


def _frames(items: list) -> list[Frame]:
    return [i for i in items if isinstance(i, Frame)]


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    cv2.imwrite(str(root / "a_colour.jpg"), colour_image())
    cv2.imwrite(str(root / "sub" / "gray.png"), np.full((20, 30), 77, np.uint8))
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 5
    cv2.imwrite(str(root / "rgba.png"), rgba)
    deep = np.array([[0, 4000], [65535, 51000]], np.uint16)
    cv2.imwrite(str(root / "deep16.png"), deep)
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("hello")
    (root / ".DS_Store").write_bytes(b"junk")
    return root


def test_folder_yields_bgr_uint8_and_skips_bad_files(mixed_folder: Path) -> None:
    items = list(open_source(str(mixed_folder)))
    by_name = {i.name: i for i in items}
    assert sorted(by_name) == ["a_colour", "corrupt", "deep16", "empty", "notes", "rgba", "sub/gray"]
    frames = _frames(items)
    assert {f.name for f in frames} == {"a_colour", "deep16", "rgba", "sub/gray"}
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
        assert f.kind == "image" and f.frame_index == 0 and f.decode_ms >= 0
    assert {i.name for i in items if isinstance(i, Skipped)} == {"corrupt", "empty", "notes"}
    assert "empty" in by_name["empty"].reason and "not an image" in by_name["notes"].reason
    np.testing.assert_array_equal(by_name["a_colour"].image.shape, (24, 32, 3))
    assert (by_name["sub/gray"].image == 77).all()
    assert by_name["rgba"].image[0, 0].tolist() == [10, 20, 30]
    deep = by_name["deep16"].image
    assert deep[..., 0].tolist() == [[0, 16], [255, 198]]  # value / 257, rounded
    assert by_name["sub/gray"].source == str(mixed_folder / "sub" / "gray.png")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "phone.jpg", exif=exif)
    (frame,) = open_source(str(tmp_path / "phone.jpg"))
    assert frame.image.shape == (40, 20, 3)


def test_glob_and_recursive_glob(mixed_folder: Path) -> None:
    flat = list(open_source(str(mixed_folder / "*.png")))
    assert [i.name for i in flat] == ["deep16", "empty", "rgba"]
    deep = list(open_source(str(mixed_folder / "**" / "*.png")))
    assert [i.name for i in deep] == ["deep16", "empty", "rgba", "sub/gray"]
    with pytest.raises(TwdeployError, match="matches no files"):
        open_source(str(mixed_folder / "*.gif"))


def test_txt_list_mixes_entries_and_skips_missing(mixed_folder: Path, video: Path) -> None:
    listing = mixed_folder.parent / "list.txt"
    listing.write_text(f"# sources\nimgs/a_colour.jpg\n\n{mixed_folder / 'sub'}\nmissing.png\n{video}\nother.txt\n")
    source = open_source(str(listing))
    items = list(source)
    names = [i.name for i in items]
    assert names[:3] == ["a_colour", "gray", "missing"]
    assert isinstance(items[2], Skipped) and "no such file" in items[2].reason
    assert names[3:13] == [f"clip_{i:06d}" for i in range(10)]
    assert isinstance(items[13], Skipped) and "nested" in items[13].reason
    assert source.kind == "mixed"


@pytest.mark.parametrize(("stride", "expected"), [(1, list(range(10))), (2, [0, 2, 4, 6, 8]), (3, [0, 3, 6, 9])])
def test_video_frames_honour_stride(video: Path, stride: int, expected: list[int]) -> None:
    source = open_source(str(video), vid_stride=stride)
    frames = list(source)
    assert [f.frame_index for f in frames] == expected
    assert source.frame_count == len(expected) and source.fps == pytest.approx(10.0)
    assert all(f.kind == "video" and f.fps == pytest.approx(10.0) for f in frames)
    assert frames[-1].name == f"clip_{expected[-1]:06d}"
    brightness = [int(np.median(f.image)) for f in frames]
    assert all(abs(b - 20 * i) <= 6 for b, i in zip(brightness, expected, strict=True))


def test_folder_with_videos_and_a_broken_video(tmp_path: Path) -> None:
    write_video(tmp_path / "b.avi", 4)
    (tmp_path / "c_bad.mp4").write_bytes(b"not a video at all")
    cv2.imwrite(str(tmp_path / "a.png"), colour_image())
    items = list(open_source(str(tmp_path)))
    assert [i.name for i in items] == ["a", *[f"b_{i:06d}" for i in range(4)], "c_bad"]
    assert isinstance(items[-1], Skipped) and "cannot open video" in items[-1].reason


def test_duplicate_names_are_made_unique(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "x.png"), colour_image())
    cv2.imwrite(str(tmp_path / "x.jpg"), colour_image())
    assert [i.name for i in open_source(str(tmp_path))] == ["x", "x_2"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("does/not/exist.jpg", "no such file"),
        ("9", "camera 9: cannot open"),
        ("model.onnx", "unknown file type"),
    ],
)
def test_unusable_sources_raise_one_line(tmp_path: Path, spec: str, message: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(TwdeployError, match=message) as info:
        open_source(spec)
    assert "\n" not in str(info.value)


def test_empty_folder_and_folder_without_images_raise(tmp_path: Path) -> None:
    with pytest.raises(TwdeployError, match="folder is empty"):
        open_source(str(tmp_path))
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(TwdeployError, match="no images or videos"):
        open_source(str(tmp_path))
    with pytest.raises(TwdeployError, match="vid-stride"):
        open_source(str(tmp_path), vid_stride=0)


def test_broken_video_given_directly_raises(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(TwdeployError, match="cannot open video"):
        open_source(str(tmp_path / "bad.mp4"))


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_http_stream_drops_stale_frames_and_stops_its_thread(tmp_path: Path, http_server: str) -> None:
    write_video(tmp_path / "live.avi", 60)
    before = threading.active_count()
    source = open_source(f"{http_server}/live.avi")
    assert isinstance(source, StreamSource) and source.is_live
    indices = []
    for frame in source:
        assert frame.kind == "stream" and frame.image.dtype == np.uint8
        indices.append(frame.frame_index)
        assert len(indices) <= 60, "the same frame was delivered twice"
        time.sleep(0.05)  # a slow consumer: the grabber must not queue up stale frames
    assert indices == sorted(set(indices))
    assert len(indices) < 60
    assert indices[-1] == 59  # the newest frame is delivered, not an old one
    assert frame.name == f"live_{indices[-1]:06d}"
    assert threading.active_count() == before


def test_stream_stops_early_without_leaking_the_grabber(video: Path) -> None:
    before = threading.active_count()
    source = StreamSource(str(video), "cam")
    for _ in source:
        break
    source.close()
    assert threading.active_count() == before
