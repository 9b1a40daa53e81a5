"""Write segmentation results into a run folder: masks, overlays, heatmaps, videos, results.jsonl.

Layout of an output folder (`runs/segment/<n>/` by default)::

    masks/<name>.png                palette PNG at the original size; pixel values are class ids
    overlays/<name>.jpg             mask blended over the image, with a legend
    heatmaps/<name>/<id>_<cls>.png  one diverging heatmap per class (blue < 0 < red)
    videos/<stem>.mp4               annotated video per video / stream source (fragmented MP4;
                                    while running, or after a kill, videos/<stem>.partial.mp4)
    results.jsonl                   one JSON object per image / frame

Every file appears atomically (temp file in the same folder, then os.replace); the JSONL is
appended and flushed line by line.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Collection, Sequence
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image

from twdeploy import atomic
from twdeploy.errors import TwdeployError
from twdeploy.inference.render import PALETTE_RGB, class_name, colorize_heatmap, overlay, resize_heatmaps
from twdeploy.inference.results import frame_record
from twdeploy.inference.sources import Frame

SAVE_ITEMS = frozenset({"mask", "overlay", "heatmaps", "video", "json"})
DEFAULT_VIDEO_FPS = 30.0
PARTIAL_SUFFIX = ".partial.mp4"
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


def default_save(source_kind: str) -> frozenset[str]:
    """What to save by default: per-image files for images, an annotated video for videos/streams."""
    if source_kind == "image":
        return frozenset({"mask", "overlay", "json"})
    if source_kind in ("video", "stream"):
        return frozenset({"video", "json"})
    return frozenset({"mask", "overlay", "video", "json"})


def next_run_dir(base: str | Path = "runs/segment") -> Path:
    """Create and return `base/<n>` with n one more than the largest existing number (from 1)."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    n = max((int(p.name) for p in base.iterdir() if p.name.isdigit()), default=0) + 1
    while True:
        try:
            (base / str(n)).mkdir()
            return base / str(n)
        except FileExistsError:  # another run took it meanwhile
            n += 1


def encode_palette_png(mask: np.ndarray) -> bytes:
    """Class-id mask (H, W), ids 0..255 -> palette ('P') PNG bytes whose pixel values are the ids."""
    if mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError("palette PNG masks hold class ids 0..255 only")
    image = Image.fromarray(mask.astype(np.uint8))
    image.putpalette(PALETTE_RGB.tobytes())
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def encode_image(image: np.ndarray, suffix: str) -> bytes:
    """BGR image -> encoded bytes for `suffix` ('.jpg', '.png', ...)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV cannot encode '{suffix}' images")
    return buf.tobytes()


def _safe_rel(name: str) -> PurePosixPath:
    """An output-relative path for `name` that cannot escape the output folder."""
    parts = [re.sub(r"[^\w.\- ]+", "_", p) for p in PurePosixPath(name).parts if p not in ("/", ".", "..")]
    return PurePosixPath(*parts) if parts else PurePosixPath("unnamed")


class _VideoSink:
    """An annotated video, written as fragmented MP4 to ``<stem>.partial.mp4`` and renamed on close.

    A fragment (about one second, from one keyframe to the next) reaches the disk as soon as it
    is complete, so after ``kill -9`` the partial file plays up to the last full second.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.size = (size[0] + size[0] % 2, size[1] + size[1] % 2)  # yuv420p needs even sides
        self.partial = path.with_name(f"{path.stem}{PARTIAL_SUFFIX}")
        rate = Fraction(fps).limit_denominator(1001)
        try:
            self.container = av.open(str(self.partial), "w", format="mp4", options=FRAGMENTED_MP4)
        except OSError as exc:
            raise TwdeployError(f"{path}: cannot write a video here ({exc.strerror}); check the folder") from None
        self.stream = self.container.add_stream("mpeg4", rate=rate)
        self.stream.height, self.stream.width = self.size
        self.stream.pix_fmt = "yuv420p"
        self.stream.bit_rate = max(500_000, self.size[0] * self.size[1] * max(1, round(fps)) // 2)  # 0.5 bit/px/frame
        self.stream.codec_context.gop_size = max(1, round(fps))  # a keyframe, so a fragment, every second

    def write(self, image: np.ndarray) -> None:
        if image.shape[:2] != self.size:
            image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.partial, self.path)


class SegmentWriter:
    """Saves what `save` names for each segmented frame into `out_dir`.

    `classes` restricts what is drawn (overlays, videos, heatmaps); the mask PNG and the
    JSON always hold every class. Use as a context manager or call close() at the end.
    """

    def __init__(
        self,
        out_dir: str | Path,
        names: Sequence[str] | None = None,
        save: Collection[str] = ("mask", "overlay", "json"),
        classes: Collection[int] | None = None,
        alpha: float = 0.5,
        overlay_suffix: str = ".jpg",
        heatmap_limit: float | None = None,
    ) -> None:
        unknown = set(save) - SAVE_ITEMS
        if unknown:
            known = ",".join(sorted(SAVE_ITEMS))
            raise TwdeployError(f"--save {','.join(sorted(unknown))}: unknown item: choose from {known}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.names, self.save, self.alpha = names, frozenset(save), alpha
        self.classes = None if classes is None else frozenset(classes)
        self.overlay_suffix, self.heatmap_limit = overlay_suffix, heatmap_limit
        self.count = 0
        self._video: tuple[str, _VideoSink] | None = None
        self._jsonl = (self.out_dir / "results.jsonl").open("a", encoding="utf-8") if "json" in save else None

    def write(
        self,
        frame: Frame,
        mask: np.ndarray,
        heatmaps: np.ndarray | None = None,
        class_ids: Sequence[int] = (),
        timings: dict[str, float] | None = None,
        shown: np.ndarray | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Save one frame's results; `mask` is (H0, W0) at the original size, `heatmaps[i]` is class_ids[i].

        `shown` is the overlay when the caller already rendered it; `extra` joins the JSON record,
        which is returned (and written to results.jsonl when 'json' is saved).
        """
        if mask.shape != frame.size:
            raise ValueError(f"{frame.name}: mask {mask.shape} is not at the original size {frame.size}")
        rel = _safe_rel(frame.name)
        if "mask" in self.save:
            atomic.write_bytes(self._path("masks", rel, ".png"), encode_palette_png(mask))
        wants_video = "video" in self.save and frame.kind in ("video", "stream")
        if self.draws(frame):
            if shown is None:
                shown = overlay(frame.image, mask, self.alpha, self.names, self.classes)
            if "overlay" in self.save:
                suffix = self.overlay_suffix
                atomic.write_bytes(self._path("overlays", rel, suffix), encode_image(shown, suffix))
            if wants_video:
                self._video_for(frame).write(shown)
        if "heatmaps" in self.save and heatmaps is not None:
            self._write_heatmaps(frame, rel, heatmaps, class_ids)
        record = {**frame_record(frame, mask, self.names, timings or {}), **(extra or {})}
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        self.count += 1
        return record

    def close(self) -> None:
        """Finish the open video and the JSONL file (idempotent)."""
        if self._video is not None:
            self._video[1].close()
            self._video = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def draws(self, frame: Frame) -> bool:
        """True when saving ``frame`` needs its overlay (overlays, or a video of a video/stream)."""
        return "overlay" in self.save or ("video" in self.save and frame.kind in ("video", "stream"))

    def _path(self, folder: str, rel: PurePosixPath, suffix: str) -> Path:
        return self.out_dir / folder / f"{rel}{suffix}"

    def _video_for(self, frame: Frame) -> _VideoSink:
        """The video sink for frame.source; sources come one after another, so the previous one ends."""
        if self._video is not None and self._video[0] != frame.source:
            self._video[1].close()
            self._video = None
        if self._video is None:
            stem = _safe_rel(re.sub(r"_\d{6}(_\d+)?$", "", frame.name))
            sink = _VideoSink(self._path("videos", stem, ".mp4"), frame.fps or DEFAULT_VIDEO_FPS, frame.size)
            self._video = (frame.source, sink)
        return self._video[1]

    def _write_heatmaps(self, frame: Frame, rel: PurePosixPath, heatmaps: np.ndarray, class_ids: Sequence[int]) -> None:
        if len(class_ids) != len(heatmaps):
            raise ValueError(f"{len(heatmaps)} heatmaps but {len(class_ids)} class ids")
        full = resize_heatmaps(heatmaps, frame.size)
        for cid, heatmap in zip(class_ids, full, strict=True):
            if self.classes is not None and cid not in self.classes:
                continue
            label = f"{cid}" if self.names is None else f"{cid}_{_safe_rel(class_name(cid, self.names)).name}"
            png = encode_image(colorize_heatmap(heatmap, self.heatmap_limit), ".png")
            atomic.write_bytes(self.out_dir / "heatmaps" / rel / f"{label}.png", png)
