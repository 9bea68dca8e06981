"""audiodiff: diffusion models of raw audio (DiffWave-style vocoder and generator).

The public API:

    from audiodiff import Vocoder, Generator, load_recipe
    voc = Vocoder.from_checkpoint("runs/tiny/step-00000200.pt")
    wav = voc.vocode(mel, steps=6)            # [n_mels, frames] -> [frames * hop]
    plan = voc.plan()                         # the checkpoint's defaults, resolved once (sampling_plan.py)
    wav = voc.vocode(mel, plan, seed=1)
    gen = Generator.from_checkpoint("runs/fsdd/step-00100000.pt")
    clips = gen.generate(seconds=5, count=2)  # [2, 5 * sample_rate]
    example_path()                            # a shipped 3.3 s CC0 speech clip to try a vocoder on
    load_recipe("tiny")                       # a shipped recipe by name, or a recipe file

`__version__` is the one version source: pyproject.toml reads it for the package metadata.
"""
from audiodiff.errors import AudiodiffError
from audiodiff.inference import Generator, Vocoder, load_model
from audiodiff.pretrained import example_path
from audiodiff.recipe import Recipe, load_recipe

__version__ = "0.1.0"
__all__ = ["AudiodiffError", "Generator", "Recipe", "Vocoder", "__version__", "example_path", "load_model",
           "load_recipe"]
