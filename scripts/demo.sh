#!/usr/bin/env bash
# The main job on a fresh machine: install, train on the built-in scenes (CPU, a few minutes),
# export + verify ONNX, then segment held-out scenes and a generated video with the ONNX model.
# Idempotent: re-running retrains runs/demo from scratch and overwrites runs/demo-segment/.
# The paper's recipe on vgg_mini_bn: CLASSIFY_STEPS tags-only steps, then STEPS heatmap steps
# from that classifier (docs/training.md). STEPS=150 CLASSIFY_STEPS=150 bash scripts/demo.sh for a
# quicker, rougher model; README.md says what val mIoU and tag F1 to expect.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-450}"
CLASSIFY_STEPS="${CLASSIFY_STEPS:-300}"
bash scripts/install.sh
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-ACTIVE}"

rm -rf runs/demo runs/demo-segment
twdeploy train --data synthetic --arch vgg_mini_bn --image-size 64 --recipe paper \
    --classify-steps "$CLASSIFY_STEPS" --steps "$STEPS" --name demo
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
