#!/usr/bin/env bash
# Recreate the shipped demo weights (demo-sdm-tiny, demo-spade-tiny): tiny models trained on
# phantom data on a CPU. Phantom-trained: for the demo only, not for clinical or research use.
#   bash examples/train_demo_weights.sh WORK_DIR [SDM_STEPS] [SPADE_STEPS]
# The steps, seeds and commands are recorded in weights/manifest.toml. Training resumes
# bit-for-bit, so the checkpoint at step N of a longer run equals a run of N steps.
set -euo pipefail
work="$1"; sdm_steps="${2:-4000}"; spade_steps="${3:-2000}"
mkdir -p "$work" && cd "$work"
lungforge phantom luna --scans 40 --size 128 --seed 7
lungforge prepare luna --out train.zarr --keep-nodule-free 1.0 --test-patients 0.2 --workers 2
lungforge train sdm --data train.zarr --out sdm-run --preset tiny --steps "$sdm_steps" --batch-size 4 \
    --checkpoint-every 250 --workers 0 --seed 0
lungforge train spade --data train.zarr --out spade-run --preset tiny --steps "$spade_steps" --batch-size 8 \
    --checkpoint-every 250 --workers 0 --seed 0
lungforge weights import sdm-run --name demo-sdm-tiny --force --json
lungforge weights import spade-run --name demo-spade-tiny --force --json
