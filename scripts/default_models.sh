#!/usr/bin/env bash
# How the shipped default models (audiodiff/pretrained/) are made and measured, from the
# repository root with ../shared/data beside it. Each stage resumes or can be re-run.
#
#   bash scripts/default_models.sh train      # ~5.6 h of a 2-core machine (vocoder) + ~1.4 h (generator): re-run to resume
#   bash scripts/default_models.sh search     # 8 min: schedules for 2, 3, 4, 6 steps on 5 held-out clips
#   bash scripts/default_models.sh export     # write audiodiff/pretrained/*.pt
#   bash scripts/default_models.sh eval       # held-out Kathleen + ljspeech-mini numbers of the shipped files (~15 min)
#   bash scripts/default_models.sh generator  # spectrograms of generated vs training piano
#
# The previous default vocoder (kathleen-12x32-infer, a DiffWave 12 x 32 trained 4.9 h with the
# kathleen recipe and InferGrad's loss) has its commands in this file's history:
#   git show 9e16bef:scripts/default_models.sh
# VOCODER_CKPT / GENERATOR_CKPT pick the checkpoints (default: the shipped steps, 40000 and 22000).
set -euo pipefail
stage=${1:?stage: train, search, export, eval or generator}
VOC_RUN=${VOC_RUN:-runs/kathleen-frames}
EVAL=${EVAL_DIR:-eval}               # where eval writes
GEN_RUN=${GEN_RUN:-runs/bach-piano-frames}
VOC_CKPT=${VOCODER_CKPT:-$VOC_RUN-7/step-00040000.pt}
# the recipe's 20 validation clips (never trained on): 5 to search on, 15 to report on
validation() { python -c "import json, sys; v = json.load(open('$VOC_RUN/split.json'))['validation']; print(' '.join(v[$1]))"; }
SEARCH_CLIPS=$(validation ':5' 2>/dev/null || true)
REPORT_CLIPS=$(validation '5:' 2>/dev/null || true)

case $stage in
  train)
    # The vocoder, stage 1: the kathleen-frames recipe as written, to step 6500 (the shipped run went
    # on from its float32 export with --init at step 3728, a fresh optimiser; a plain resume of this
    # command is the same recipe without that optimiser reset).
    audiodiff train kathleen-frames --out-dir $VOC_RUN --max-steps 6500 --set train.keep_checkpoints=60
    # stage 2: from step 6500's float32 export with --init (a fresh optimiser, the step count kept),
    # the rate annealed (cosine) from 4e-4 to 2e-5 over steps 6500-18500, to step 19000 (the shipped run
    # started from the shipped step-6500 file, 69c21a4: the same weights, with its searched schedules,
    # which do not enter the loss; they may change the logged validation numbers)
    [ -f $VOC_RUN/step6500-fp32.pt ] || audiodiff export $VOC_RUN/step-00006500.pt -o $VOC_RUN/step6500-fp32.pt --fp32
    audiodiff train kathleen-frames --init $VOC_RUN/step6500-fp32.pt --out-dir $VOC_RUN-2 --max-steps 19000 \
      --set train.lr_decay=cosine --set train.decay_start=6500 --set train.decay_steps=12000 \
      --set train.min_learning_rate=2e-5 --set train.keep_checkpoints=60
    # stages 3-7: warm restarts, each from the last stage's float32 export with --init (a fresh
    # optimiser, the step count kept), the rate annealed (cosine) to 2e-5 (the shipped run started
    # each from the searched float32 file of that step: the same weights; schedules do not enter the loss)
    restart() {  # restart FROM_RUN FROM_STEP TO_RUN TO_STEP RATE DECAY_STEPS
      local init=$1/step$2-fp32.pt
      [ -f $init ] || audiodiff export $1/step-$(printf %08d $2).pt -o $init --fp32
      audiodiff train kathleen-frames --init $init --out-dir $3 --max-steps $4 \
        --set train.learning_rate=$5 --set train.lr_decay=cosine --set train.decay_start=$2 --set train.decay_steps=$6 \
        --set train.min_learning_rate=2e-5 --set train.keep_checkpoints=60
    }
    restart $VOC_RUN-2 19000 $VOC_RUN-3 23750 2e-4 10000    # 2e-4 toward 2e-5 over 19000-29000, stopped at 23750
    restart $VOC_RUN-3 23750 $VOC_RUN-4 28000 1.5e-4 4250   # (the shipped run's first 228 steps: decay_steps 5250)
    restart $VOC_RUN-4 28000 $VOC_RUN-5 32000 1.5e-4 4000   # (the shipped run's first 466 steps: decay_steps 6000)
    restart $VOC_RUN-5 32000 $VOC_RUN-6 36000 1.5e-4 4000
    restart $VOC_RUN-6 36000 $VOC_RUN-7 40000 1.5e-4 4000
    # the generator: the bach-piano-frames recipe as written, to the shipped step 22000 (about 1.4 h)
    audiodiff train bach-piano-frames --out-dir $GEN_RUN --max-steps "${GENERATOR_STEP:-22000}" \
      --set train.validate_every=500 --set train.keep_checkpoints=40 ;;
  search)
    # PESQ with the mel gain adjustment the shipped vocoder uses, guarded by log-mel (no worse than
    # the recipe's fast schedule): 8 min for 2, 3, 4 and 6 steps (about 120 candidates each)
    audiodiff export "$VOC_CKPT" -o $VOC_RUN/vocoder.pt --fp32 --gain-adjust --refine 0 --default-steps 4
    audiodiff schedule search -c $VOC_RUN/vocoder.pt $SEARCH_CLIPS --steps 2,3,4,6 --metric pesq_wb --guard log_mel \
      --gain-adjust --budget-minutes 8 -o $VOC_RUN/vocoder.pt --overwrite ;;
  export)
    # both in float16 (9.1 + 9.2 MB: the 20 MB cap holds both); the vocoder keeps its searched schedules
    audiodiff export $VOC_RUN/vocoder.pt -o audiodiff/pretrained/vocoder.pt
    audiodiff export "${GENERATOR_CKPT:-$GEN_RUN/step-00022000.pt}" -o audiodiff/pretrained/generator.pt \
      --default-steps "${GENERATOR_STEPS:-50}" ;;
  eval)
    export OMP_NUM_THREADS=1
    # the shipped vocoder at its default plan (searched 4 steps, gain adjustment), beside both
    # Griffin-Lims and the reference; then another speaker, the 22 LJSpeech clips
    audiodiff eval $REPORT_CLIPS --steps 4 --out-dir $EVAL/kathleen-heldout-shipped &
    audiodiff eval ../shared/data/ljspeech-mini/wavs --steps 4 --out-dir $EVAL/ljspeech-mini-shipped
    wait
    # the network alone (no gain adjustment, the recipe's 2/4/6-step rule)
    audiodiff eval $REPORT_CLIPS --steps 2,4,6 --no-gain-adjust --out-dir $EVAL/kathleen-heldout-raw ;;
  generator)
    # 5 s excerpts (from 20 s in) of 4 training chorales, at the model's 16 kHz, as the reference set
    python - <<'PY'
from pathlib import Path
from audiodiff.audio import load_audio, save_audio
out = Path("eval/generator-references")
for f in sorted(Path("../shared/data/bach-piano").glob("*.flac"))[:4]:
    save_audio(out / f"{f.stem}-20s.wav", load_audio(f, 16000)[20 * 16000:25 * 16000], 16000)
PY
    audiodiff eval -c audiodiff/pretrained/generator.pt eval/generator-references -n 3 --seconds 5 \
      --steps 50,100,200 --out-dir eval/generator
    d=eval/generator/audio
    python scripts/spectrogram_panels.py $d/reference/bwv153.1-20s.wav $d/reference/bwv17.7-20s.wav \
      $d/steps-50/clip-{0,1,2}.wav --labels "training excerpt bwv153.1" "training excerpt bwv17.7" \
      "generated, seed 0 clip 0 (50 steps)" "clip 1" "clip 2" --start 0 --seconds 5 --fmax 4000 \
      -o docs/default-models/generator-frames.png ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
