"""Copy a part of a run's training clips (and all its validation clips) into a small
LJSpeech-layout folder, to carry to a GPU machine that cannot see ../shared.

The device machine this project borrows takes at most 64 MiB per call, and Kathleen's
FLAC files are 110 MB, so its GPU training ran in chunks, each on one part of the
training split (parts are disjoint; every part holds every validation clip, which
`split.json` keeps out of training). The run folder's `split.json` is reused as is: on
the device, `../shared/data/kathleen` is made a link to the copied folder, so the
clip paths stay the same.

    python benchmarks/gpu_subset.py runs/kathleen/split.json ../shared/data/kathleen \
        .kdata/kathleen --part 0 --parts 2 --max-mb 44
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split", type=Path, help="the run's split.json")
    parser.add_argument("root", type=Path, help="the data set (metadata.csv + wavs/)")
    parser.add_argument("out", type=Path, help="folder to write (replaced)")
    parser.add_argument("--part", type=int, default=0)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--max-mb", type=float, default=44.0, help="stop adding training clips past this size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    split = json.loads(args.split.read_text())
    train = sorted(split["train"])
    random.Random(args.seed).shuffle(train)
    part = train[args.part::args.parts]
    chosen, total = [], 0
    for path in part:
        size = Path(path).stat().st_size
        if total + size > args.max_mb * 1e6:
            break
        chosen.append(path)
        total += size
    keep = {Path(p).stem for p in chosen + split["validation"]}

    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "wavs").mkdir(parents=True)
    lines = (args.root / "metadata.csv").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.split("|", 1)[0].strip() in keep]
    (args.out / "metadata.csv").write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    for stem in sorted(keep):
        shutil.copy2(args.root / "wavs" / f"{stem}.flac", args.out / "wavs" / f"{stem}.flac")
    print(f"{args.out}: {len(chosen)} of {len(train)} training clips ({total / 1e6:.1f} MB, "
          f"part {args.part} of {args.parts}) + {len(split['validation'])} validation clips")


if __name__ == "__main__":
    main()
