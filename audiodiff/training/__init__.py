"""Training: `train` (or `Trainer(...).run()`) trains a recipe's network in a run folder,
resuming from its newest checkpoint, with `TrainOptions` (device, console, progress bar,
`--init`). AdamW with a learning-rate schedule, gradient accumulation, clipping, EMA,
mixed precision, data parallelism (torchrun), atomic checkpoints, resume, validation,
and logging to metrics.jsonl and TensorBoard.

A run lives in one folder:

    step-XXXXXXXX.pt   the last `keep_checkpoints` checkpoints (see checkpoint.py)
    split.json         the train/validation split (kept, so a resumed run reuses it)
    metrics.jsonl      one JSON line per log interval and per validation
    samples/           the validation reference and what the model made of it, per step
    tensorboard/       TensorBoard events (when the optional package is installed)
    train.lock         locked while a training writes here: a second one fails at once (run_lock.py)

One optimiser step sees the global batch: `train.batch_size` crops x processes (one
per device under torchrun, see distributed.py) x `train.grad_accum` accumulation
steps. The crops, noise levels and noise of step s are drawn for the whole global
batch from generators seeded by (seed, s), and each process and accumulation step
takes its rows of it. So a run killed and resumed follows the same loss curve as one
that never stopped, and N processes follow (up to float rounding) the curve of one
process with the same global batch. Only rank 0 writes files and prints.

A step whose loss (over the global batch) or gradient norm is not finite is skipped:
no optimiser or EMA update, a warning; after `train.max_nonfinite` such steps in a
row training stops with `TrainingStopped` and the checkpoints already written intact.

The pieces, one idea each:

    trainer.py     Trainer: builds the pieces and runs the loop (`run`)
    state.py       TrainState (weights, EMA, optimiser, step...): fresh, resumed, --init, saved
    objective.py   the loss of a micro-batch: the diffusion loss, its STFT term, the infer term
    step.py        one optimiser step: accumulation, clipping, the non-finite policy, EMA
    loader.py      the crop loader, crops split into audio and mel, the validation clip
    validation.py  vocode (or generate) the validation clip with the EMA weights
    run_log.py     console, metrics.jsonl, TensorBoard and the progress bar
    infer_loss.py  InferGrad's infer loss (the objective's infer term)
    lr_schedule.py the learning rate at a step: warm-up and decay
    distributed.py torchrun: this process's rank, device and process group
    logging_tb.py  TensorBoard events (when the optional package is installed)
"""
from audiodiff.training.trainer import TrainOptions, Trainer, train

__all__ = ["TrainOptions", "Trainer", "train"]
