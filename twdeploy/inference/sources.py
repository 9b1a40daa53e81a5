"""Input sources for `twdeploy segment`: images, folders, globs, videos, cameras, streams, lists.

`open_source(spec)` returns a `Source`: an iterable of `Frame` items (8-bit BGR images with a
stable output name) and `Skipped` items (one bad input, reported by the consumer, never fatal).
Only errors that make the whole source unusable raise `TwdeployError`; once a source is open,
any failure of one of its parts (a video that will not open or stops decoding, a file that
vanished) becomes a `Skipped` record through :meth:`Source.guarded_items`, and the run goes on.
"""

from __future__ import annotations

import glob
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from twdeploy.data.imageio import IMAGE_SUFFIXES, read_image, to_bgr8
from twdeploy.errors import BadItemError, TwdeployError

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp"}
)
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")
_GLOB_CHARS = re.compile(r"[*?\[]")

FrameKind = Literal["image", "video", "stream"]


@dataclass(frozen=True)
class Frame:
    """One decoded image: 8-bit BGR pixels plus where it came from."""

    image: np.ndarray
    name: str
    source: str
    kind: FrameKind
    frame_index: int = 0
    decode_ms: float = 0.0
    fps: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the original image."""
        return self.image.shape[0], self.image.shape[1]


@dataclass(frozen=True)
class Skipped:
    """One input that could not be used, with the reason (the consumer counts and reports it)."""

    name: str
    reason: str
    source: str = ""


Item = Frame | Skipped


class Source(ABC):
    """An iterable of Frame / Skipped items with unique names; close() releases devices."""

    kind: str = "image"
    is_live: bool = False

    @abstractmethod
    def _items(self) -> Iterator[Item]:
        """Yield the items; names may repeat (made unique by __iter__)."""

    @property
    def label(self) -> str:
        """What to call this source in a skip record."""
        return type(self).__name__

    def guarded_items(self) -> Iterator[Item]:
        """:meth:`_items`, where a failure of this source ends it with one Skipped record instead of the run."""
        try:
            yield from self._items()
        except Exception as exc:  # any decoder or file-system failure of one part; the run goes on
            reason = (str(exc) if isinstance(exc, TwdeployError) else f"{type(exc).__name__}: {exc}").strip()
            first = reason.splitlines()[0] if reason else type(exc).__name__
            yield Skipped(Path(self.label).stem or self.label, first, self.label)

    def __iter__(self) -> Iterator[Item]:
        seen: dict[str, int] = {}
        items = self.guarded_items()
        try:
            for item in items:
                count = seen.get(item.name, 0)
                seen[item.name] = count + 1
                if count and isinstance(item, Frame):
                    item = replace(item, name=f"{item.name}_{count + 1}")
                yield item
        finally:
            items.close()  # release captures and grabber threads now, not at garbage collection

    @property
    def frame_count(self) -> int | None:
        """Number of frames this source will yield when known in advance, else None."""
        return None

    @property
    def fps(self) -> float | None:
        """Frame rate when the source is one video or stream, else None."""
        return None

    def close(self) -> None:
        """Release devices and threads (safe to call twice); files hold nothing open."""
        return None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ImageSource(Source):
    """Still images: (path, output name) pairs decoded in order."""

    entries: list[tuple[Path, str]]

    @property
    def frame_count(self) -> int:
        return len(self.entries)

    def _items(self) -> Iterator[Item]:
        for path, name in self.entries:
            start = time.perf_counter()
            try:
                image = read_image(path)
            except BadItemError as exc:
                yield Skipped(name, str(exc), str(path))
                continue
            ms = (time.perf_counter() - start) * 1000
            yield Frame(image, name, str(path), "image", 0, ms)


@dataclass
class VideoSource(Source):
    """A video file decoded frame by frame, keeping every `vid_stride`-th frame."""

    path: Path
    name: str
    vid_stride: int = 1
    kind: str = field(default="video", init=False)
    _meta: tuple[float | None, int | None] | None = field(default=None, init=False, repr=False)

    def probe(self) -> tuple[float | None, int | None]:
        """Open the video once to read (fps, total frames); raises TwdeployError if it cannot open."""
        if self._meta is None:
            cap = cv2.VideoCapture(str(self.path))
            try:
                if not cap.isOpened():
                    raise TwdeployError(
                        f"{self.path}: cannot open video: check the file is complete and the codec "
                        "is supported by OpenCV's FFmpeg"
                    )
                self._meta = _capture_meta(cap)
            finally:
                cap.release()
        return self._meta

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def fps(self) -> float | None:
        return self.probe()[0]

    @property
    def frame_count(self) -> int | None:
        """Frames to come; a video that cannot open counts as its one skip record."""
        try:
            total = self.probe()[1]
        except TwdeployError:
            return 1
        return None if total is None else -(-total // self.vid_stride)

    def _items(self) -> Iterator[Item]:
        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened():
                yield Skipped(self.name, "cannot open video (corrupt or unsupported codec)", str(self.path))
                return
            fps = _capture_meta(cap)[0]
            index = yielded = 0
            while True:
                start = time.perf_counter()
                if index % self.vid_stride and cap.grab():
                    index += 1
                    continue
                ok, image = cap.read()
                if not ok or image is None:
                    break
                ms = (time.perf_counter() - start) * 1000
                name = f"{self.name}_{index:06d}"
                try:
                    yield Frame(to_bgr8(image), name, str(self.path), "video", index, ms, fps)
                    yielded += 1
                except BadItemError as exc:
                    yield Skipped(name, str(exc), str(self.path))
                index += 1
            if not yielded:
                yield Skipped(self.name, "video has no decodable frames", str(self.path))
        finally:
            cap.release()


class StreamSource(Source):
    """A live capture (webcam index or URL) read in a thread that keeps only the newest frame.

    Frames that arrive while the consumer is busy are dropped, so results never lag behind.
    The stream ends when the capture stops delivering or no frame arrives for `stall_s`
    (then a Skipped item says so). Single use: the capture is released when iteration ends.
    """

    kind = "stream"
    is_live = True

    def __init__(self, target: int | str, name: str, vid_stride: int = 1, stall_s: float = 10.0) -> None:
        self.target, self.name, self.vid_stride, self.stall_s = target, name, vid_stride, stall_s
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            self._cap.release()
            hint = (
                "check the camera index and that no other program uses it"
                if isinstance(target, int)
                else "check the URL, credentials and network"
            )
            raise TwdeployError(f"{_describe(target)}: cannot open: {hint}")
        self._fps = _capture_meta(self._cap)[0]
        self._cond = threading.Condition()
        self._latest: tuple[int, np.ndarray, float] | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab, name=f"twdeploy-grab-{name}", daemon=True)
        self._thread.start()

    @property
    def label(self) -> str:
        return _describe(self.target)

    @property
    def fps(self) -> float | None:
        return self._fps

    def _grab(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                if not self._cap.grab():
                    break
                if index % self.vid_stride == 0:
                    start = time.perf_counter()
                    ok, image = self._cap.retrieve()
                    if not ok or image is None:
                        break
                    ms = (time.perf_counter() - start) * 1000
                    with self._cond:
                        self._latest = (index, image, ms)
                        self._cond.notify_all()
                index += 1
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _items(self) -> Iterator[Item]:
        source = _describe(self.target)
        try:
            while True:
                with self._cond:
                    got = self._cond.wait_for(lambda: self._latest is not None or self._ended, self.stall_s)
                    latest, self._latest = self._latest, None
                if latest is None:
                    if not got:
                        yield Skipped(self.name, f"stream stalled: no frame for {self.stall_s:g} s", source)
                    return
                index, image, ms = latest
                frame_name = f"{self.name}_{index:06d}"
                yield Frame(to_bgr8(image), frame_name, source, "stream", index, ms, self._fps)
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._cap.release()


@dataclass
class ChainSource(Source):
    """Several sources one after another (a .txt list, or a folder holding videos)."""

    parts: list[Source | Skipped]

    def __post_init__(self) -> None:
        kinds = {p.kind for p in self.parts if isinstance(p, Source)}
        self.kind = kinds.pop() if len(kinds) == 1 else "mixed"
        self.is_live = any(isinstance(p, Source) and p.is_live for p in self.parts)

    @property
    def frame_count(self) -> int | None:
        counts = [p.frame_count for p in self.parts if isinstance(p, Source)]
        return None if None in counts else sum(c or 0 for c in counts)

    @property
    def label(self) -> str:
        return "list of sources"

    def _items(self) -> Iterator[Item]:
        for part in self.parts:
            if isinstance(part, Skipped):
                yield part
            else:
                yield from part.guarded_items()

    def close(self) -> None:
        for part in self.parts:
            if isinstance(part, Source):
                part.close()


def open_source(spec: str, vid_stride: int = 1, stall_s: float = 10.0) -> Source:
    """Open SOURCE: image, folder, glob, video, webcam index, rtsp/http URL, or a .txt list of these."""
    if vid_stride < 1:
        raise TwdeployError(f"--vid-stride {vid_stride}: must be 1 or more")
    spec = spec.strip()
    if spec.lower().startswith(STREAM_PREFIXES):
        return StreamSource(spec, _stream_name(spec), vid_stride, stall_s)
    path = Path(spec).expanduser()
    if spec.isdigit() and not path.exists():
        return StreamSource(int(spec), f"webcam{spec}", vid_stride, stall_s)
    if _GLOB_CHARS.search(spec) and not path.exists():
        return _open_glob(spec, vid_stride)
    if not path.exists():
        raise TwdeployError(f"{spec}: no such file or folder: check the path (or quote a glob pattern)")
    if path.is_dir():
        return _open_folder(path, vid_stride)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return _open_list(path, vid_stride, stall_s)
    if suffix in VIDEO_SUFFIXES:
        video = VideoSource(path, path.stem, vid_stride)
        video.probe()
        return video
    if suffix in IMAGE_SUFFIXES:
        return ImageSource([(path, path.stem)])
    known = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES | {".txt"}))
    raise TwdeployError(f"{spec}: unknown file type '{suffix}': use one of {known}")


def _open_folder(folder: Path, vid_stride: int) -> Source:
    files = sorted(
        p
        for p in folder.rglob("*")
        if (p.is_file() or _is_dangling(p)) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise TwdeployError(f"{folder}: folder is empty: point SOURCE at a folder with images or videos")
    source = _from_files(files, folder, vid_stride)
    if not any(isinstance(p, Source) for p in source.parts):
        known = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        raise TwdeployError(f"{folder}: no images or videos found: known suffixes are {known}")
    return source


def _open_glob(pattern: str, vid_stride: int) -> Source:
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise TwdeployError(f"{pattern}: glob matches no files: check the pattern")
    fixed = list(_until_magic(Path(pattern).parts))
    root = Path(*fixed) if fixed else Path(".")
    return _from_files(files, root, vid_stride)


def _open_list(list_file: Path, vid_stride: int, stall_s: float) -> Source:
    parts: list[Source | Skipped] = []
    lines = list_file.read_text(encoding="utf-8-sig").splitlines()
    for line in (ln.strip() for ln in lines):
        if not line or line.startswith("#"):
            continue
        is_url = line.lower().startswith(STREAM_PREFIXES)
        entry = line if is_url or line.isdigit() or Path(line).is_absolute() else str(list_file.parent / line)
        if entry.lower().endswith(".txt"):
            parts.append(Skipped(Path(line).stem, "nested .txt lists are not supported", entry))
            continue
        try:
            parts.append(open_source(entry, vid_stride, stall_s))
        except TwdeployError as exc:
            parts.append(Skipped(Path(line).stem or line, str(exc), entry))
    if not parts:
        raise TwdeployError(f"{list_file}: list is empty: put one image/folder/video/URL per line")
    return ChainSource(parts)


def _from_files(files: list[Path], root: Path, vid_stride: int) -> ChainSource:
    """Group files into image runs and videos, in order; other files become Skipped."""
    parts: list[Source | Skipped] = []
    for path in files:
        name = _rel_name(path, root)
        suffix = path.suffix.lower()
        if _is_dangling(path):
            parts.append(Skipped(name, "broken symbolic link: its target does not exist", str(path)))
        elif suffix in IMAGE_SUFFIXES:
            if not parts or not isinstance(parts[-1], ImageSource):
                parts.append(ImageSource([]))
            parts[-1].entries.append((path, name))
        elif suffix in VIDEO_SUFFIXES:
            parts.append(VideoSource(path, name, vid_stride))
        else:
            parts.append(Skipped(name, f"not an image or video (suffix '{path.suffix}')", str(path)))
    return ChainSource(parts)


def _is_dangling(path: Path) -> bool:
    return path.is_symlink() and not path.exists()


def _until_magic(parts: tuple[str, ...]) -> Iterator[str]:
    """The leading path parts of a glob pattern that hold no wildcard."""
    for part in parts:
        if _GLOB_CHARS.search(part):
            return
        yield part


def _rel_name(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("").as_posix()


def _capture_meta(cap: cv2.VideoCapture) -> tuple[float | None, int | None]:
    fps = cap.get(cv2.CAP_PROP_FPS)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return (fps if 0 < fps < 1000 else None), (total if total > 0 else None)


def _stream_name(url: str) -> str:
    tail = url.split("://", 1)[1].split("?")[0].rstrip("/")
    stem = Path(tail.rsplit("/", 1)[-1]).stem if "/" in tail else tail
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "stream"


def _describe(target: int | str) -> str:
    return f"camera {target}" if isinstance(target, int) else str(target)
