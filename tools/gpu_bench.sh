#!/usr/bin/env bash
# Batched inference throughput on one GPU (issue 22): UGAS R50, its base SeqNet, NAE, NAE+ and the
# plain Faster R-CNN C4 detector at 900x1500; batch 1/8/16/32; bfloat16 and float32; channels_last
# on and off (BatchNorm folded); the unoptimised batch-1 path of today beside them; images/s, model
# FLOPs utilisation, the ratios UGAS/SeqNet, NAE+/NAE, NAE+/plain, profiles of NAE and NAE+ (what
# makes NAE+ slower), host synchronisations per call, one torch.compile row per model.
# Writes $OUT/throughput.json and $OUT/throughput.md (rewritten after every row), $OUT/log.txt and
# $OUT/predictor_check.json (PersonSearchPredictor on the device against the CPU, seconds).
# No new measurement starts after BUDGET seconds (default 165; a torch.compile row only with 60 s of
# it left): on an H200 the whole run, start-up included, stays under 4 minutes. cuDNN's autotuner
# is off (real galleries change the RoI count every call); EXTRA="--cudnn-benchmark" turns it on.
#
# Usage, from the repository root:
#   bash tools/gpu_bench.sh --prepare   # HERE, once: .gpu_bench/site = detectron2's Python files
#                                       # (no _C) and the pure-Python packages the GPU image lacks,
#                                       # plus pycocotools for Python 3.12 (pip download)
#   bash tools/gpu_bench.sh             # THERE (device run, carry .gpu_bench), or anywhere with
#                                       # detectron2 importable
# Environment: OUT (default output/gpu_bench), DEVICE (cuda), SIZE (900x1500), BATCHES ("1 8 16
# 32"), PRECISIONS ("bfloat16 float32"), BUDGET (165), MODELS ("r50" or "synthetic": the R10
# configs, for a CPU dry run), PY (python3), EXTRA (more throughput flags).
# CPU dry run (minutes):
#   DEVICE=cpu SIZE=128x192 MODELS=synthetic BATCHES="1 2" BUDGET=60 bash tools/gpu_bench.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "${1:-}" = "--prepare" ]; then
    PY="${PY:-python}"
    SITE="$ROOT/.gpu_bench/site"
    rm -rf "$ROOT/.gpu_bench" && mkdir -p "$SITE"
    # the packages `import personsearch` needs that the GPU image does not hold (pure Python)
    for pkg in detectron2 fvcore iopath yacs omegaconf antlr4 termcolor; do
        src="$("$PY" -c "import $pkg, os; print(os.path.dirname($pkg.__file__))")"
        cp -r "$src" "$SITE/"
    done
    find "$SITE" -name "*.so" -delete          # detectron2's _C: nothing here needs it
    find "$SITE" -name "__pycache__" -type d -prune -exec rm -rf {} +
    # pycocotools is compiled: the CPython 3.12 wheel (the GPU image's Python)
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$ROOT/.gpu_bench/wheels" pycocotools >/dev/null
    "$PY" -m zipfile -e "$ROOT"/.gpu_bench/wheels/pycocotools-*.whl "$SITE"
    rm -rf "$ROOT/.gpu_bench/wheels"
    exclude="$(git rev-parse --git-common-dir)/info/exclude"
    grep -qx "/.gpu_bench/" "$exclude" 2>/dev/null || echo "/.gpu_bench/" >> "$exclude"
    du -sh "$ROOT/.gpu_bench"
    echo "prepared .gpu_bench/ (ignored by git): carry it to the GPU machine (carry: [\".gpu_bench\"])"
    exit 0
fi

PY="${PY:-python3}"
OUT="${OUT:-$ROOT/output/gpu_bench}"
DEVICE="${DEVICE:-cuda}"
SIZE="${SIZE:-900x1500}"
BATCHES="${BATCHES:-1 8 16 32}"
PRECISIONS="${PRECISIONS:-bfloat16 float32}"
BUDGET="${BUDGET:-165}"
mkdir -p "$OUT"
if [ -d "$ROOT/.gpu_bench/site" ]; then
    export PYTHONPATH="$ROOT/.gpu_bench/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
if [ "${MODELS:-r50}" = "synthetic" ]; then
    C=configs/synthetic
    UGAS=$C/UGAS_R10.yaml; SEQNET=$C/SeqNet_R10.yaml; NAE=$C/NAE_R10.yaml; NAEP=$C/NAE+_R10.yaml
else
    UGAS=configs/UGAS_R50.yaml; SEQNET=configs/SeqNet_R50.yaml; NAE=configs/NAE_R50.yaml
    NAEP=configs/NAE+_R50.yaml
fi
"$PY" - <<'EOF' 2>&1 | tee "$OUT/log.txt"
import sys
try:
    import torch, detectron2, personsearch  # noqa: F401
except ImportError as e:
    sys.exit(f"gpu_bench: cannot import {e.name!r}; run 'bash tools/gpu_bench.sh --prepare' here "
             "first and carry .gpu_bench, or put detectron2's Python files on PYTHONPATH")
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
EOF
# the predictor's device path (pinned inputs, non-blocking copies, one synchronisation for the
# outputs) on a small model, against the CPU; a failure is reported, the sweep still runs
"$PY" -m benchmarks.device_check "$DEVICE" "$OUT/predictor_check.json" 2>&1 \
    | grep -v Warning | tee -a "$OUT/log.txt" || echo "predictor check FAILED (see above)" \
    | tee -a "$OUT/log.txt"
# shellcheck disable=SC2086
"$PY" tools/benchmark.py throughput \
    --models "$UGAS" "$SEQNET" "$NAE" "$NAEP" "plain:$NAE" \
    --size "$SIZE" --batch $BATCHES --precision $PRECISIONS --channels-last on off \
    --runs 3 --warmup 1 --budget "$BUDGET" \
    --profile "$NAE" "$NAEP" --sync-batch 8 --compile-batch 16 \
    --pairs "$UGAS=$SEQNET" "$NAEP=$NAE" "$NAEP=plain:$NAE" "$NAE=plain:$NAE" \
    --out "$OUT" ${EXTRA:-} MODEL.DEVICE "$DEVICE" 2>&1 | tee -a "$OUT/log.txt"
