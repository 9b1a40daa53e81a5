#!/usr/bin/env bash
# The main job on a fresh machine: install, train on the built-in scenes (CPU, a few minutes),
# export + verify ONNX, then segment held-out scenes and a generated video with the ONNX model.
# Idempotent: re-running retrains runs/demo from scratch and overwrites runs/demo-segment/.
# STEPS=300 bash scripts/demo.sh for a quicker (rougher) model. Expect val mIoU about 0.26 and
# tag F1 about 0.2 after 600 steps (plain vgg_mini: still the best masks measured on the CPU,
# docs/training.md; the batch-norm recipe learns the tags but not yet the masks).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-600}"
bash scripts/install.sh
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-ACTIVE}"

rm -rf runs/demo runs/demo-segment
twdeploy train --data synthetic --arch vgg_mini --image-size 64 --steps "$STEPS" --name demo
twdeploy export runs/demo

python scripts/demo_samples.py runs/demo-segment/inputs --images 16 --frames 60 --size 128
twdeploy segment runs/demo/export/model.onnx runs/demo-segment/inputs/images \
    --save mask,overlay,heatmaps,json --batch 4 --out runs/demo-segment/images
twdeploy segment runs/demo/export/model.onnx runs/demo-segment/inputs/video.mp4 \
    --save video,json --batch 4 --out runs/demo-segment/video
twdeploy benchmark runs/demo --batches 1,4 --runs 5

echo
echo "masks:    runs/demo-segment/images/masks/     (palette PNGs, pixel value = class id)"
echo "overlays: runs/demo-segment/images/overlays/"
echo "heatmaps: runs/demo-segment/images/heatmaps/  (one PNG per class and image)"
echo "video:    runs/demo-segment/video/videos/video.mp4"
echo "model:    runs/demo/export/model.onnx (report: runs/demo/export/export_report.json)"
