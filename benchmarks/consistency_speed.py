"""Speed of the mel-consistency operations on 10 s of Kathleen-preset audio, 2 threads:
one gain-adjustment projection (`MelConsistency.project`, run at every sampling step
with gain adjustment) and the band-gain Griffin-Lim baseline (32 iterations).

    python benchmarks/consistency_speed.py
"""
import time, torch
from audiodiff.recipe import load_recipe
from audiodiff.audio import MelSpectrogram
from audiodiff.consistency import MelConsistency
from audiodiff.evaluation.baselines import band_griffin_lim
torch.set_num_threads(2)
r = load_recipe("kathleen")
t = MelSpectrogram(r.audio)
x = 0.1*torch.randn(1, 220500, generator=torch.Generator().manual_seed(0))
mel = t(x)
c = MelConsistency(t, mel)
for _ in range(2): c.project(x)
t0=time.perf_counter()
for _ in range(20): y = c.project(x)
print(f"project 10 s: {(time.perf_counter()-t0)/20*1000:.1f} ms")
m = mel[0].numpy()
band_griffin_lim(m, r.audio)
t0=time.perf_counter()
for _ in range(3): z = band_griffin_lim(m, r.audio)
print(f"band_griffin_lim 10 s: {(time.perf_counter()-t0)/3*1000:.0f} ms")
print(float(y.abs().sum()), float(abs(z).sum()))
