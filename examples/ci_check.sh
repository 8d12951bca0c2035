#!/usr/bin/env bash
# Use lungforge in CI: prepare a dataset, read the result with --json, act on exit codes.
#   bash examples/ci_check.sh LUNA16_DIR OUT_DIR
# Exit codes: 0 success, 1 error, 2 bad usage, 3 partial success (some scans skipped).
set -uo pipefail
luna="$1"; out="$2"
mkdir -p "$out"
lungforge prepare "$luna" --out "$out/real.zarr" --test-patients 0.2 --json > "$out/prepare.json"
status=$?
case $status in
  0) echo "prepare: all scans used" ;;
  3) echo "prepare: some scans were skipped:"; python3 -c "import json,sys; [print(' ', s['file'], '-', s['reason']) for s in json.load(open(sys.argv[1]))['skipped']]" "$out/prepare.json" ;;
  *) echo "prepare failed with exit code $status" >&2; exit "$status" ;;
esac
lungforge info "$out/real.zarr" --json > "$out/info.json" || exit 1
# Gate the pipeline on a property of the store, read from JSON.
python3 - "$out/info.json" <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
assert info["nodule_slices"] > 0, "no nodule slices: check annotations.csv"
assert info["splits"]["test"]["patients"] > 0, "no test patients"
print(f"store ok: {info['slices']} slices, {info['nodule_slices']} with nodules, {info['series']} patients")
PY
