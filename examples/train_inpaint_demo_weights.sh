#!/usr/bin/env bash
# Recreate the shipped inpainting demo weights (demo-sdm-inpaint-tiny): the tiny SDM as an
# inpainting SDM on 16 px windows of 128 px phantom slices (the demo's resolution), on a CPU.
# Phantom-trained: for the demo only, not for clinical or research use.
#   bash examples/train_inpaint_demo_weights.sh WORK_DIR [STEPS]
# The steps, seeds and commands are recorded in weights/manifest.toml. Training resumes
# bit-for-bit, so the checkpoint at step N of a longer run equals a run of N steps.
set -euo pipefail
work="$1"; steps="${2:-300}"
mkdir -p "$work" && cd "$work"
lungforge phantom luna --scans 40 --size 128 --seed 7
lungforge prepare luna --out train.zarr --keep-nodule-free 1.0 --test-patients 0.2 --workers 2
lungforge train sdm --data train.zarr --out inpaint-run --preset tiny --inpaint --window 16 --edit-margin 2 \
    --steps "$steps" --batch-size 8 --checkpoint-every 100 --grid-samples 4 --sample-steps 10 --workers 0 --seed 0
lungforge weights import inpaint-run --name demo-sdm-inpaint-tiny --force --json
