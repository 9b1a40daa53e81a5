#!/usr/bin/env bash
# GPU check: short CUDA training runs with bf16 autocast (steps/s, peak GPU memory; resnet50 at 256 px),
# a 1-GPU torchrun (DDP) run, TensorRT parity.
# Installs nothing large: the device already has torch with CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e . --no-deps
export OUT="${OUT:-$(mktemp -d)}"

echo "== training (CUDA, bf16 autocast) =="
python - <<'PY'
import os
import time

import torch

from twdeploy.training.config import TrainConfig
from twdeploy.training.trainer import train

assert torch.cuda.is_available(), "no CUDA device"
print(torch.cuda.get_device_name(0), "torch", torch.__version__)
for arch, size, batch, steps in (("resnet_mini", 96, 16, 200), ("resnet50", 256, 4, 30)):
    cfg = TrainConfig(
        data="synthetic:400", arch=arch, image_size=size, batch_size=batch, steps=steps, eval_every=steps,
        val_images=32, device="cuda", amp=True, out=os.path.join(os.environ["OUT"], "runs"), name=arch,
    )
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = train(cfg, quiet=True)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30
    losses = result.losses
    print(
        f"{arch} {size}px batch {batch}: {steps} steps in {elapsed:.1f} s ({steps / elapsed:.2f} steps/s incl. "
        f"data, eval, checkpoints), peak GPU memory {peak:.2f} GiB, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
        f"val mIoU {result.last_eval.miou:.3f}"
    )
PY

echo "== training under torchrun, 1 GPU (DDP, NCCL) =="
python -m torch.distributed.run --standalone --nproc-per-node 1 -m twdeploy train --data synthetic:400 \
  --arch resnet_mini --image-size 96 --batch 16 --steps 100 --eval-every 100 --val-images 32 --device cuda \
  --out "$OUT/runs" --name torchrun-1gpu
grep -m1 '"kind": "eval"' "$OUT/runs/torchrun-1gpu/metrics.jsonl" | cut -c1-200

# --- export: TensorRT engine build + parity against ONNX Runtime (skips without tensorrt) ---
python -m pytest tests/export/test_tensorrt.py tests/export/test_capability.py tests/export/test_mask_output.py tests/runtime/test_tensorrt_backend.py -m "gpu or not gpu" -q -rs
