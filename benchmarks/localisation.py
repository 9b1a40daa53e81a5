"""Where a trained model's relevance lands: the share of each present class's positive relevance inside its mask.

For every run folder or checkpoint given, every input-layer rule and every LRP-gamma (the other convs'
rule; 0 is LRP-epsilon) asked for, the heatmaps of the
first ``--images`` val scenes are computed with the model's own weights; for each (image, class) with
at least ``--min-pixels`` mask pixels it prints the mean share of the class's positive relevance that
falls inside the class's mask (against the mask's share of the image: what a random heatmap scores),
and ``sum |h| / |sum h|``, how much positive and negative relevance cancel.

    python benchmarks/localisation.py runs/tags --rules epsilon flat --gammas 0 0.25 1
"""

from __future__ import annotations

import argparse
import itertools

import torch
from rich.console import Console
from rich.table import Table

from twdeploy.model.io import load_model
from twdeploy.model.segmenter import Segmenter
from twdeploy.training.data import eval_loader
from twdeploy.training.evaluate import eval_dataset


def localisation(model: Segmenter, images: torch.Tensor, masks: torch.Tensor, min_pixels: int) -> dict[str, float]:
    """Mean inside-mask share of positive relevance, mean mask area share, mean cancellation, pair count."""
    with torch.no_grad():
        _, heatmaps = model(images)
    inside, area, cancel, pairs = 0.0, 0.0, 0.0, 0
    for n in range(heatmaps.shape[0]):
        for c in range(1, heatmaps.shape[1]):
            region = masks[n] == c
            if int(region.sum()) < min_pixels:
                continue
            h = heatmaps[n, c].double()
            positive = h.clamp(min=0)
            inside += float(positive[region].sum() / positive.sum().clamp(min=1e-30))
            area += float(region.double().mean())
            cancel += float(h.abs().sum() / h.sum().abs().clamp(min=1e-30))
            pairs += 1
    pairs_ = max(pairs, 1)
    return {"inside": inside / pairs_, "area": area / pairs_, "cancel": cancel / pairs_, "pairs": pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="run folders or checkpoints (heatmap models)")
    parser.add_argument("--rules", nargs="+", default=["epsilon", "flat"], help="input-layer rules to compare")
    parser.add_argument("--gammas", nargs="+", type=float, default=[0.0], help="LRP-gamma of the other convs")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--min-pixels", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    columns = ("pairs", "positive relevance inside the mask", "mask area", "sum|h| / |sum h|")
    table = Table("model", "input rule", "gamma", *columns)
    for path in args.models:
        model, card = load_model(path)
        if not isinstance(model, Segmenter):
            raise SystemExit(f"{path}: a {card.model} has no heatmaps; give a heatmap model")
        data = eval_dataset(card, path, args.data, "val", args.images)
        batch = next(iter(eval_loader(data, args.images)))
        for rule, gamma in itertools.product(args.rules, args.gammas):
            model.input_rule, model.gamma = rule, gamma
            r = localisation(model, batch["image"], batch["mask"], args.min_pixels)
            cells = (str(r["pairs"]), f"{r['inside']:.3f}", f"{r['area']:.3f}", f"{r['cancel']:.1f}")
            table.add_row(path, rule, f"{gamma:g}", *cells)
    Console(width=200).print(table)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} thread(s), data {args.data} val, first {args.images} scenes")


if __name__ == "__main__":
    main()
