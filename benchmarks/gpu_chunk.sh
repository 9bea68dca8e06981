#!/usr/bin/env bash
# One resumable training chunk on the borrowed GPU machine (the device tool runs it from
# the repository root). That machine has torch but not soundfile or librosa, cannot see
# ../shared, takes 64 MiB per call and returns files of 16 MiB at most, so this:
#   1. installs the carried wheels (.whl: soundfile, cffi, pycparser, librosa, soxr,
#      audioread, pooch, decorator, platformdirs for its Python) into /tmp/site;
#   2. links ../shared/data/kathleen to the carried subset (.kdata/kathleen, written by
#      benchmarks/gpu_subset.py), so the run folder's split.json is reused as is;
#   3. trains RECIPE into RUN for SECONDS, then stops it with SIGINT (the trainer saves
#      a checkpoint on interrupt);
#   4. leaves in $OUT the log, metrics.jsonl and the newest checkpoint cut into 15 MiB
#      pieces (ckpt.part.aa, ...) with its name and sha256 in ckpt.sha256.
#
# Here, before the call (RUN holds split.json, and the newest checkpoint once there is one):
#   python benchmarks/gpu_subset.py runs/kathleen/split.json ../shared/data/kathleen \
#       .kdata/kathleen --part 0 --parts 3 --max-mb 36
# (the 64 MiB carried hold the tree (~4 MB), the wheels (2 MB), the data and the run
# folder: kathleen-gpu.toml's training checkpoint is 30 MB, so once there is one the
# data gets --max-mb 26)
# device call: carry .whl .kdata/kathleen .gpurun/kgpu, command
#   bash benchmarks/gpu_chunk.sh kathleen-gpu .gpurun/kgpu 505 [--set k=v ...]
# after it, from the files it returned:
#   cat FILES_AT/ckpt.part.* > .gpurun/kgpu/$(awk '{print $2}' FILES_AT/ckpt.sha256)
#   (cd .gpurun/kgpu && sha256sum -c FILES_AT/ckpt.sha256)
set -uo pipefail
recipe=${1:?recipe}; run=${2:?run folder}; seconds=${3:?seconds of training}; shift 3
: "${OUT:?set OUT, the output folder of the device tool}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p ../shared/data && ln -sfn "$PWD/.kdata/kathleen" ../shared/data/kathleen
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout -s INT "$seconds" python3 -m audiodiff train "$recipe" --out "$run" --device cuda "$@" >"$OUT/train.log" 2>&1
echo "train exit $?"; tail -n 4 "$OUT/train.log"
cp "$run/metrics.jsonl" "$OUT/" 2>/dev/null
newest=$(ls "$run"/step-*.pt 2>/dev/null | tail -n 1)
[ -n "$newest" ] || { echo "no checkpoint in $run"; exit 1; }
(cd "$run" && sha256sum "$(basename "$newest")") >"$OUT/ckpt.sha256"
split -b 15M "$newest" "$OUT/ckpt.part."
ls -l "$OUT"
