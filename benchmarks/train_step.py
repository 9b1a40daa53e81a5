"""One training step: the one-pass trainer (full or tied gradient) vs the reference's class-by-class loop.

Each variant runs in its own child process so its peak memory (``ru_maxrss``) is its own.
Prints seconds per step (median) and peak RSS, with time ratios against the class loop and the
one pass (full gradient) where they ran. ``--tied-chunks`` adds the tied variant with each
class chunk (``training_heatmaps(..., chunk)``: checkpointed chunks, the same gradient). The first
half of each batch (rounded up) has a mask, as with the default ``--pixel-share 0.5``.

    python benchmarks/train_step.py                         # resnet50, 256 px, 21 classes, batch 4
    python benchmarks/train_step.py --arch resnet18 --size 128 --batch 2
    python benchmarks/train_step.py --batch 1 --variants one_pass one_pass_tied --tied-chunks 7 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from twdeploy.runtime import allocator

# The reference-like class loop, one pass with the full gradient (the reference's), and one pass
# with --heatmap-grad tied (the pixel loss through the tied weights only: no backward through the
# encoder's saved activations from the decoder). The one passes decode the masked images only, as
# the trainer does; one_pass_tied_all_rows decodes every image (the trainer before that).
VARIANTS = ("class_loop", "one_pass", "one_pass_tied", "one_pass_tied_all_rows")


def _step_fn(variant: str, arch: str, size: int, batch: int, classes: int, chunk: int | None):
    from twdeploy.model import Segmenter
    from twdeploy.training.chunking import loss_rows, training_heatmaps
    from twdeploy.training.losses import classification_loss, total_loss
    from twdeploy.training.tying import decoder_aliases

    torch.manual_seed(0)
    model = Segmenter(arch, classes).train()
    aliases = decoder_aliases(model, "separate")
    opt = torch.optim.AdamW([*model.parameters(), *aliases.values()], lr=1e-5)
    images = torch.rand(batch, 3, size, size)
    tags = (torch.rand(batch, classes) > 0.8).float()
    masks = torch.randint(0, classes, (batch, size, size))
    has_mask = torch.arange(batch) < (batch + 1) // 2

    def one_pass(grad: str, rows: slice | torch.Tensor) -> None:
        logits, saved = model.encode(images)
        heatmaps = training_heatmaps(model, logits, saved, aliases, chunk, grad, rows)
        loss, _ = total_loss(logits, tags, heatmaps, masks[rows], has_mask[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def class_loop() -> None:
        # The reference: one decoder pass and one backward per class; the CE needs all heatmaps, so each
        # class's gradient is d(CE)/d(h_c) (computed on detached heatmaps) pushed back through its own pass.
        opt.zero_grad(set_to_none=True)
        logits, saved = model.encode(images)
        r_all, _ = model.start_relevance(logits)
        with torch.no_grad():
            heat = model.decode(saved, r_all, aliases)
        heat.requires_grad_(True)
        loss, _ = total_loss(logits.detach(), tags, heat, masks, has_mask)
        (grad_h,) = torch.autograd.grad(loss, heat)
        for c in range(classes):
            h_c = model.decode(saved, r_all[:, c : c + 1], aliases)
            (h_c * grad_h[:, c : c + 1]).sum().backward(retain_graph=True)
        (10.0 * classification_loss(logits, tags)).backward()
        opt.step()

    if variant == "class_loop":
        return class_loop
    rows = slice(None) if variant.endswith("all_rows") else loss_rows(has_mask)
    return lambda: one_pass("full" if variant == "one_pass" else "tied", rows)


def child(args: argparse.Namespace) -> None:
    """Run one variant and print its JSON result."""
    step = _step_fn(args.variant, args.arch, args.size, args.batch, args.classes, args.chunk)
    step()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"s_per_step": statistics.median(times), "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--chunk", type=int, default=None, help="class chunk of the one-pass trainer")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--tied-chunks", nargs="+", type=int, default=[], help="also one_pass_tied at these chunks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    allocator.configure()  # as the CLI does (THP_MEM_ALLOC_ENABLE, TWDEPLOY_REUSE_MEMORY)
    torch.set_num_threads(args.threads)
    if args.variant:
        child(args)
        return
    runs = [(v, v, []) for v in args.variants]
    runs += [(f"tied, chunk {c}", "one_pass_tied", ["--chunk", str(c)]) for c in args.tied_chunks]
    rows = {}
    for name, variant, extra in runs:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", variant, *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows[name] = json.loads(out)
    print(
        f"{args.arch}, {args.size}x{args.size}, {args.classes} classes, batch {args.batch}, CPU, "
        f"torch threads {args.threads}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')}, median of {args.repeats}, "
        f"tensor pages: {allocator.describe()}, images with a mask: {(args.batch + 1) // 2}"
    )
    refs = [r for r in ("class_loop", "one_pass", "one_pass_tied_all_rows") if r in rows]
    print(f"{'variant':<22} {'s/step':>9} {'peak RSS MB':>12}" + "".join(f" {'t / ' + r:>26}" for r in refs))
    for name, row in rows.items():
        ratios = "".join(f" {row['s_per_step'] / rows[r]['s_per_step']:25.2f}x" for r in refs)
        print(f"{name:<22} {row['s_per_step']:9.2f} {row['peak_mb']:12.0f}{ratios}")


if __name__ == "__main__":
    main()
