#!/usr/bin/env bash
# One GPU, one pass, one JSON line per figure (issue 12); < 8 min on one H100-class GPU.
#
#   benchmarks/device.sh                    # paper preset, CUDA, bf16 (the figures for the README)
#   benchmarks/device.sh --preset tiny      # the same script on CPU in a few minutes: proves it runs
#
# Figures: SDM training (batch 8, and the largest batch that fits), SDM sampling (dpmpp-25,
# guidance 1.5; batch 16 and 64; without and with torch.compile), SPADE sampling, and augment end
# to end with random-initialised weights (overhead vs pure sampling), and the inpainting SDM's
# cost per nodule (64 px windows on 256 px slices) against whole-slice SDM (counted and measured), and
# bench detect under torchrun against one process (one GPU per rank where there are 2+, else 4 CPU
# ranks). Each command has its own time limit; a failed or timed-out figure prints {"figure": ..., "error": ...} and the rest go on.
# Environment: PYTHON (default python), DEVICE (default auto), PRECISION (default bf16 on CUDA,
# fp32 on CPU, whose bf16 is emulated on most CPUs), PEAK_TFLOPS (override the known-GPU table).
set -u
cd "$(dirname "$0")/.."
PRESET=paper
if [ "${1:-}" = "--preset" ]; then PRESET="${2:?--preset needs tiny or paper}"; fi
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEVICE="${DEVICE:-auto}"
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available() and '$DEVICE' != 'cpu'))")
if [ "$CUDA" = 1 ]; then DEFAULT_PRECISION=bf16; else DEFAULT_PRECISION=fp32; fi
PRECISION="${PRECISION:-$DEFAULT_PRECISION}"
PEAK=()
if [ -n "${PEAK_TFLOPS:-}" ]; then PEAK=(--peak-tflops "$PEAK_TFLOPS"); fi
COMMON=(--device "$DEVICE" --precision "$PRECISION" --preset "$PRESET" --json "${PEAK[@]}")

if [ "$PRESET" = paper ]; then
    SMALL=16; LARGE=64; STEPS=25; TRAIN_STEPS=3; LIMIT=150; COMPILE_LIMIT=330
    AUGMENT=(--nodules 48 --nodule-free 16 --batch-size 32 --steps 10)
    INPAINT=(--nodules 32 --batch-size 32 --steps 10)
else
    SMALL=2; LARGE=4; STEPS=3; TRAIN_STEPS=2; LIMIT=900; COMPILE_LIMIT=1800
    AUGMENT=(--nodules 6 --nodule-free 2 --batch-size 4 --steps 3)
    INPAINT=(--nodules 4 --batch-size 4 --steps 3)
fi

figure() {  # figure NAME LIMIT_S COMMAND...: the command's JSON lines tagged with NAME, or an error line
    local name=$1 limit=$2 out rc
    shift 2
    out=$(timeout "$limit" "$@" 2>/tmp/lungforge-device-$$.err)
    rc=$?
    if [ $rc -ne 0 ] || [ -z "$out" ]; then
        "$PY" -c 'import json, sys; print(json.dumps({"figure": sys.argv[1], "error": f"exit {sys.argv[2]}", "stderr": sys.argv[3][-400:]}))' \
            "$name" "$rc" "$(cat /tmp/lungforge-device-$$.err)"
    else
        printf '%s\n' "$out" | "$PY" -c 'import json, sys
for line in sys.stdin:
    if line.strip():
        print(json.dumps({"figure": sys.argv[1], **json.loads(line)}), flush=True)' "$name"
    fi
    rm -f /tmp/lungforge-device-$$.err
}

figure sdm-train-b8 "$LIMIT" "$PY" benchmarks/training.py "${COMMON[@]}" --batch-size 8 --steps "$TRAIN_STEPS"
if [ "$CUDA" = 1 ]; then
    figure sdm-train-max "$LIMIT" "$PY" benchmarks/training.py "${COMMON[@]}" --batch-size max --steps "$TRAIN_STEPS"
else
    echo '{"figure": "sdm-train-max", "skipped": "the largest-batch search needs CUDA"}'
fi
figure sdm-sample "$LIMIT" "$PY" benchmarks/sampling.py "${COMMON[@]}" --batch-size "$SMALL,$LARGE" --steps "$STEPS"
figure sdm-sample-compile "$COMPILE_LIMIT" "$PY" benchmarks/sampling.py "${COMMON[@]}" --batch-size "$SMALL,$LARGE" --steps "$STEPS" --compile
figure sdm-sample-contiguous "$LIMIT" "$PY" benchmarks/sampling.py "${COMMON[@]}" --batch-size "$SMALL" --steps "$STEPS" --memory-format contiguous
figure spade-sample "$LIMIT" "$PY" benchmarks/sampling.py "${COMMON[@]}" --model spade --batch-size "$SMALL,$LARGE" --repeats 3
figure augment "$LIMIT" "$PY" benchmarks/augment.py --device "$DEVICE" --precision "$PRECISION" --preset "$PRESET" --json "${AUGMENT[@]}"
figure inpaint-cost "$LIMIT" "$PY" benchmarks/inpaint_cost.py --device "$DEVICE" --precision "$PRECISION" --preset "$PRESET" --json "${INPAINT[@]}"
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() and '$DEVICE' != 'cpu' else 0)")
if [ "$GPUS" -ge 2 ]; then
    figure bench-ranks "$LIMIT" "$PY" benchmarks/bench_ranks.py --device cuda --ranks "$GPUS" --epochs 60
else
    figure bench-ranks-cpu "$LIMIT" "$PY" benchmarks/bench_ranks.py --device cpu --ranks 4 --epochs 60
fi
