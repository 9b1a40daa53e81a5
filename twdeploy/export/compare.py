"""Output comparison of two backends, and the tolerances an export must meet.

Tolerances follow Polygraphy's scheme where it fits and use a global measure where it does not:

* ``logits``: element-wise ``|a - b| <= atol + rtol * |b|`` (Polygraphy's default check),
  plus the relative maximum error ``max|a - b| / max|b|`` reported.
* ``heatmaps``: element-wise bounds are meaningless here: LRP divides by pre-activations
  that can be near zero (method.md 1.4), so single pixels lose digits even in float64 vs
  float32. They are judged by the relative L2 error ``||a - b|| / ||b||`` (worst image) and
  by the agreement of the argmax masks, which is what segmentation uses.
* ``class_ids`` (top-k export): the selected classes must agree exactly.
* ``mask`` (``--outputs mask``: the argmax inside the graph): the candidate's own mask is
  compared with the reference's (the torch heatmaps' argmax) by the same agreement; without
  a ``heatmaps`` output the heatmaps check is left out.

Float32 limits: float32 LRP is itself 4.5e-5 (resnet18) to 8.8e-3 (vgg16) relative L2 away
from float64 (method.md 1.4), so two float32 backends may differ by as much; 1e-2 still
catches any real graph difference (those are of order 1), and the mask criterion (99.5%)
is the one that matters for segmentation. Measured ORT vs torch: 2e-6 (resnet_mini),
1.7e-4 (vgg_mini), 3.8e-3 (random-init resnet18 at 64 px, worst image), masks 100%.
Half precision is judged against the float32 reference mainly by mask agreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from twdeploy.model.segmenter import masks_from_heatmaps

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """Limits for one comparison (see the module docstring)."""

    logits_atol: float
    logits_rtol: float
    heatmaps_rel_l2: float
    mask_agreement: float
    class_ids_agreement: float = 100.0

    def to_dict(self) -> dict[str, float]:
        """JSON-compatible dict."""
        return asdict(self)


FP32 = Tolerance(logits_atol=1e-4, logits_rtol=1e-4, heatmaps_rel_l2=1e-2, mask_agreement=99.5)
FP16 = Tolerance(logits_atol=2e-2, logits_rtol=2e-2, heatmaps_rel_l2=1e-1, mask_agreement=97.0)


@dataclass(frozen=True)
class Check:
    """One pass/fail criterion with its measured value."""

    name: str
    value: float
    limit: float
    passed: bool
    rule: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return asdict(self)


def masks(outputs: Outputs) -> np.ndarray:
    """Class-id masks ``(N, H, W)``: the in-graph ``mask``, else the heatmaps' argmax (through class ids)."""
    if "mask" in outputs:
        return outputs["mask"].astype(np.int64)
    ids = torch.from_numpy(outputs["class_ids"]) if "class_ids" in outputs else None
    return masks_from_heatmaps(torch.from_numpy(outputs["heatmaps"]), ids).numpy()


def measure(reference: Outputs, candidate: Outputs) -> dict[str, float]:
    """Error measures of ``candidate`` against ``reference`` (heatmap ones when both have heatmaps)."""
    tiny = np.finfo(np.float64).tiny
    ref_l, got_l = reference["logits"].astype(np.float64), candidate["logits"].astype(np.float64)
    diff_l = np.abs(got_l - ref_l)
    result = {
        "logits_max_abs": float(diff_l.max()),
        "logits_max_rel": float(diff_l.max() / max(np.abs(ref_l).max(), tiny)),
    }
    if "heatmaps" in reference and "heatmaps" in candidate:
        ref_h, got_h = reference["heatmaps"].astype(np.float64), candidate["heatmaps"].astype(np.float64)
        diff_h = np.abs(got_h - ref_h)
        per_image = np.sqrt((diff_h**2).reshape(len(ref_h), -1).sum(1)) / np.maximum(
            np.sqrt((ref_h**2).reshape(len(ref_h), -1).sum(1)), tiny
        )
        result["heatmaps_max_abs"] = float(diff_h.max())
        result["heatmaps_max_rel"] = float(diff_h.max() / max(np.abs(ref_h).max(), tiny))
        result["heatmaps_rel_l2"] = float(per_image.max())
    result["mask_agreement"] = float(100.0 * (masks(reference) == masks(candidate)).mean())
    if "class_ids" in reference:
        result["class_ids_agreement"] = float(100.0 * (reference["class_ids"] == candidate["class_ids"]).mean())
    return result


def judge(reference: Outputs, candidate: Outputs, tol: Tolerance) -> tuple[dict[str, float], list[Check]]:
    """Measures and the pass/fail checks of ``candidate`` against ``reference``."""
    m = measure(reference, candidate)
    ref_l = reference["logits"].astype(np.float64)
    diff_l = np.abs(candidate["logits"].astype(np.float64) - ref_l)
    bound = tol.logits_atol + tol.logits_rtol * np.abs(ref_l)
    worst = float((diff_l / bound).max())
    checks = [
        Check("logits", worst, 1.0, worst <= 1.0, f"max |a-b| / ({tol.logits_atol:g} + {tol.logits_rtol:g}|b|)"),
    ]
    if "heatmaps_rel_l2" in m:
        checks.append(
            Check(
                "heatmaps",
                m["heatmaps_rel_l2"],
                tol.heatmaps_rel_l2,
                m["heatmaps_rel_l2"] <= tol.heatmaps_rel_l2,
                "relative L2, worst image",
            )
        )
    checks.append(
        Check(
            "masks",
            m["mask_agreement"],
            tol.mask_agreement,
            m["mask_agreement"] >= tol.mask_agreement,
            "argmax agreement %",
        )
    )
    if "class_ids_agreement" in m:
        checks.append(
            Check(
                "class_ids",
                m["class_ids_agreement"],
                tol.class_ids_agreement,
                m["class_ids_agreement"] >= tol.class_ids_agreement,
                "selected classes agree %",
            )
        )
    return m, checks
