#!/usr/bin/env bash
# Every GPU check of hf_gpt2 in one command, for a GPU machine that has PyTorch but not this project's packages.
#
#   make gpu-wheels                      # here: wheels of the tested versions into .whl/ (no network needed there)
#   bash benchmarks/gpu_check.sh [OUT]   # there, from the repository root (or: make gpu-check)
#   bash benchmarks/gpu_check.sh --smoke [OUT]   # a rehearsal on CPU: every step with a tiny configuration
#
# 1. installs .whl/*.whl (or $HF_GPT2_WHEELS/*.whl) when present into a private folder, put on PYTHONPATH with the repo;
# 2. records the GPU and the package versions (env.txt) and checks that hf_gpt2 and its dependencies import;
# 3. benchmarks/gpu_throughput.py: GPT-2 124M, T=1024, bf16: hf_gpt2 (chunked loss), hf_gpt2-nochunk and stock,
#    eager and compiled: tokens/s, ratio to stock, MFU (gpu_throughput.json, throughput.log);
# 4. benchmarks/time_to_loss.py --gpu: GPT-2 124M, T=1024, bf16, compiled, on the built-in corpus: stock GPT-2 +
#    Trainer against hf_gpt2 and recipes/speedrun_cpu.yaml, tokens and training time to stock's val bits per byte
#    (time_to_loss.json, time_to_loss.log);
# 5. the CUDA tests (pytest -m gpu): parity with stock GPT-2, the chunked loss under bf16, inductor compile with
#    gradient accumulation, fused AdamW, and a bf16 + compiled training run through `accelerate launch` that resumes
#    from its checkpoint (pytest_gpu.log).
# Each step has a time limit (THROUGHPUT_TIMEOUT=170, TIME_TO_LOSS_TIMEOUT=190, TESTS_TIMEOUT=190 seconds: the whole
# check fits a 10-minute command), so one that hangs cannot hide the others; the JSON files are rewritten after every
# configuration or contender.
# The exit status is non-zero when any step failed; summary.txt says which.
set -uo pipefail
cd "$(dirname "$0")/.."
smoke=()
if [ "${1:-}" = "--smoke" ]; then
    smoke=(--smoke)
    shift
fi
out="${1:-${OUT:-gpu-check}}"
scale=1  # the limits are for a GPU; a rehearsal on a (shared) CPU gets four times as long
[ ${#smoke[@]} -gt 0 ] && scale=4
mkdir -p "$out"
py="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
wheels="${HF_GPT2_WHEELS:-.whl}"
site="${HF_GPT2_SITE:-/tmp/hf_gpt2_site}"
if compgen -G "$wheels/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl \
        || { echo "error: installing $wheels/*.whl into $site failed (one version of each package only)"; exit 1; }
    export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "no $wheels/*.whl: using the packages installed for $py (make gpu-wheels carries the tested versions)"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

status=()
step() {  # step NAME LOG COMMAND...: run it with its output also in LOG, remember its exit status
    local name=$1 log=$2
    shift 2
    echo "=== $name: $*" | tee "$log"
    "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    status+=("$name: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")
}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
    "$py" - <<'PY'
import importlib.metadata as m
import platform

import torch

print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
names = ["transformers", "tokenizers", "accelerate", "huggingface_hub", "safetensors", "datasets", "evaluate", "peft",
         "pyarrow", "tiktoken", "triton", "numpy", "pytest"]
for name in names:
    try:
        print(f"{name} {m.version(name)}")
    except m.PackageNotFoundError:
        print(f"{name} not installed")
PY
} 2>&1 | tee "$out/env.txt"

step imports "$out/imports.log" "$py" -c \
    "import hf_gpt2, hf_gpt2.training, hf_gpt2.evaluation, hf_gpt2.finetune, hf_gpt2.hub; print('hf_gpt2 imports')"
# shellcheck disable=SC2086  # THROUGHPUT_ARGS is a list of options
step throughput "$out/throughput.log" timeout "$(( ${THROUGHPUT_TIMEOUT:-170} * scale ))" "$py" benchmarks/gpu_throughput.py \
    --json "$out/gpu_throughput.json" ${THROUGHPUT_ARGS:---steps 12 --warmup 3} "${smoke[@]}"
# shellcheck disable=SC2086  # TIME_TO_LOSS_ARGS is a list of options
step time_to_loss "$out/time_to_loss.log" timeout "$(( ${TIME_TO_LOSS_TIMEOUT:-190} * scale ))" "$py" benchmarks/time_to_loss.py \
    --gpu --json "$out/time_to_loss.json" ${TIME_TO_LOSS_ARGS:-} "${smoke[@]}"
step tests "$out/pytest_gpu.log" timeout "$(( ${TESTS_TIMEOUT:-190} * scale ))" "$py" -m pytest -q -p no:cacheprovider -m gpu -rA \
    tests/test_gpu.py tests/test_speed.py

printf '%s\n' "${status[@]}" | tee "$out/summary.txt"
! grep -q FAILED "$out/summary.txt"
