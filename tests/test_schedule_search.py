"""`audiodiff schedule search`: searched schedules, stored in and reloaded from checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.checkpoint import load_checkpoint, save_searched_copy
from audiodiff.diffusion import Schedule, inference_schedule
from audiodiff.errors import AudiodiffError, CheckpointError
from audiodiff.recipe import DiffusionConfig
from audiodiff.inference import Vocoder
from audiodiff.schedule_search import (LAST_STEP_FACTORS, ClipScorer, Candidate, baseline_candidates,
                                       grid_candidates, last_step_candidates, perturb, search)
from audiodiff.searched_schedule import GuardScore, SearchedSchedule

from conftest import SR, chirp, sine


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    paths = []
    for i, wav in enumerate([sine(0.3, 330.0), chirp(0.3, seed=1)]):
        paths.append(root / f"c{i}.wav")
        sf.write(paths[-1], wav, SR, subtype="PCM_16")
    return paths


def guard_scores(result) -> dict[str, float]:
    """The guard scores stored with a step count's found schedule, by metric."""
    return {g.metric: g.score for g in result.best.guard}


def test_geometric_and_grid_shapes():
    betas = Candidate.geometric(1e-4, 0.5, 4).betas
    assert len(betas) == 4 and betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.5)
    assert np.allclose(np.diff(np.log10(betas)), np.log10(0.5 / 1e-4) / 3)
    assert Candidate.geometric(1e-3, 0.3, 1).betas == (0.3,)
    assert {len(c.betas) for c in grid_candidates(3)} == {3}
    # one definition of geometric betas: the grid's are the default rule's, to the bit
    fast = inference_schedule(DiffusionConfig(), 4)
    assert Candidate.geometric(1e-4, 0.5, 4).betas == tuple(fast.betas.tolist())
    assert len(grid_candidates(3)) == 15 and len(grid_candidates(1)) == 5


def test_last_step_candidates_move_only_the_least_noisy_beta():
    start = Candidate((1e-4, 1.7e-3, 0.029, 0.5), "ddim", 1.0)
    moved = last_step_candidates(start)
    assert [c.betas[0] for c in moved] == pytest.approx([1e-4 * f for f in LAST_STEP_FACTORS])
    assert all(c.betas[1:] == start.betas[1:] and (c.sampler, c.eta) == ("ddim", 1.0) for c in moved)
    close = last_step_candidates(Candidate((1e-3, 1.5e-3)))  # x2 would pass betas[1]: kept below it
    assert close[-1].betas == pytest.approx((1.5e-3 * 0.99, 1.5e-3))
    for c in moved + close:  # valid schedules: strictly decreasing noise levels
        levels = Schedule.from_betas(c.betas).noise_levels
        assert bool((levels[1:] < levels[:-1]).all())


def test_perturb_stays_valid_and_is_seeded():
    start = Candidate(Candidate.geometric(1e-4, 0.5, 6).betas, "ddim", 0.5)
    a = [perturb(start, 2.0, np.random.default_rng(7)) for _ in range(3)]
    b = [perturb(start, 2.0, np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    for c in a:
        assert all(0 < x < 1 for x in c.betas) and 0.0 <= c.eta <= 1.0 and len(c.betas) == 6


def test_baselines_include_lmnt_fast_schedule(tiny_ckpt):
    vocoder = Vocoder.from_checkpoint(tiny_ckpt)
    six = baseline_candidates(vocoder, 6)
    assert six["default"].betas == pytest.approx((1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5))
    assert six["ddim"].sampler == "ddim"
    assert len(baseline_candidates(vocoder, 2)["train-subsampled"].betas) == 2


def test_search_returns_requested_lengths_with_decreasing_levels(tiny_ckpt, clips):
    vocoder = Vocoder.from_checkpoint(tiny_ckpt)
    audio = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in clips]
    scorer = ClipScorer(vocoder, audio, "log_mel")
    seen = []
    results = search(scorer, [3, 2], budget_s=2.0, on_progress=lambda f, line: seen.append(f))
    assert [r.steps for r in results] == [2, 3]
    for r in results:
        assert len(r.best.betas) == r.steps and r.best.metric == "log_mel" and r.best.clips == 2
        assert r.best.gain_adjust is False  # the tiny checkpoint's setting, resolved and recorded
        levels = r.best.schedule.noise_levels
        assert bool((levels[1:] < levels[:-1]).all()) and bool((levels > 0).all())
        assert set(r.baselines) == {"default", "train-subsampled", "ddim"}
        # the search starts from the baselines, so it is never worse than them (lower is better)
        assert r.best.score <= min(r.baselines.values()) + 1e-9
        assert r.evaluations >= 3
    assert seen and all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen)
    # the score is the mean over the clips with the candidate's own schedule and sampler
    again = scorer.score(Candidate(results[0].best.betas, results[0].best.sampler, results[0].best.eta))
    assert again == pytest.approx(results[0].best.score)


class _ClockedScorer(ClipScorer):
    """Scores by a seeded random number and advances a fake clock by `cost` seconds per
    candidate (`cost` of a 2-step candidate, in proportion to the step count)."""

    def __init__(self, vocoder, clock: list[float], cost: float):
        super().__init__(vocoder, [torch.zeros(512)], "log_mel")
        self.clock, self.cost, self.rng = clock, cost, np.random.default_rng(0)

    def score_all(self, candidate):
        self.clock[0] += self.cost * len(candidate.betas) / 2
        return {"log_mel": float(self.rng.random())}


def test_search_stays_within_its_budget(monkeypatch, tiny_ckpt):
    """No candidate starts unless it can finish in time: with candidates of 0.7 s (2 steps)
    to 2.1 s (6 steps) and a 40 s budget the search ends at or before 40 s, and uses most of it."""
    import audiodiff.schedule_search as module

    clock = [0.0]
    monkeypatch.setattr(module.time, "perf_counter", lambda: clock[0])
    scorer = _ClockedScorer(Vocoder.from_checkpoint(tiny_ckpt), clock, cost=0.7)
    results = search(scorer, [2, 3, 4, 6], budget_s=40.0)
    assert 40.0 - 2.1 < clock[0] <= 40.0
    assert all(r.evaluations >= 4 for r in results)


class _ListingScorer(ClipScorer):
    """Records each candidate it scores; the stored schedule scores best (0), others 1."""

    def __init__(self, vocoder, best: Candidate):
        super().__init__(vocoder, [torch.zeros(512)], "log_mel")
        self.best, self.seen = best, []

    def score_all(self, candidate):
        self.seen.append(candidate)
        return {"log_mel": 0.0 if candidate == self.best else 1.0}


def test_search_again_starts_from_the_stored_schedule(tmp_path, tiny_ckpt):
    """A checkpoint that already stores a 3-step schedule: a search with no time to spare
    scores the three baselines and then the stored schedule, and keeps it when it is best;
    without a stored schedule only the baselines are scored."""
    stored = SearchedSchedule((3e-5, 0.02, 0.45), "ddim", 0.6, "log_mel", 0.5, 5)
    path = save_searched_copy(load_checkpoint(tiny_ckpt), tmp_path / "s.pt", {3: stored})
    want = Candidate((3e-5, 0.02, 0.45), "ddim", 0.6)
    scorer = _ListingScorer(Vocoder.from_checkpoint(path), want)
    (result,) = search(scorer, [3], budget_s=0.0)
    assert scorer.seen[3] == want and result.evaluations == 4
    assert (result.best.betas, result.best.sampler, result.best.eta) == (want.betas, "ddim", 0.6)
    plain = _ListingScorer(Vocoder.from_checkpoint(tiny_ckpt), want)
    (result,) = search(plain, [3], budget_s=0.0)
    assert result.evaluations == 3 and want not in plain.seen


class _TradeScorer(ClipScorer):
    """MR-STFT guarded by log-mel, from a table: the fast (6-step) schedule scores
    mr_stft 1.0 / log_mel 0.5; a 3-step schedule whose last step has beta < 5e-5 gives
    0.3 / 0.4 (meets the guard); the 3-step default rule (beta 1e-4 there) the best
    mr_stft, 0.1, but log_mel 0.6; anything else 0.9 / `other_log_mel`. Candidates cost
    1 s of a fake clock."""

    def __init__(self, vocoder, clock, guard=("log_mel",), other_log_mel=0.7, small_last=0.4, fast_log_mel=0.5):
        super().__init__(vocoder, [torch.zeros(512)], "mr_stft", guard=guard)
        self.clock, self.other_log_mel, self.small_last = clock, other_log_mel, small_last
        self.fast_log_mel = fast_log_mel

    def score_all(self, candidate):
        self.clock[0] += 1.0
        if len(candidate.betas) == 6:
            return {"mr_stft": 1.0, "log_mel": self.fast_log_mel}
        if candidate.betas[0] < 5e-5:
            return {"mr_stft": 0.3, "log_mel": self.small_last}
        if candidate == Candidate.of(inference_schedule(self.vocoder.recipe.diffusion, 3)):
            return {"mr_stft": 0.1, "log_mel": 0.6}
        return {"mr_stft": 0.9, "log_mel": self.other_log_mel}


def test_guard_keeps_the_best_schedule_that_does_not_lose_to_the_fast_one(monkeypatch, tiny_ckpt):
    import audiodiff.schedule_search as module

    clock = [0.0]
    monkeypatch.setattr(module.time, "perf_counter", lambda: clock[0])
    vocoder = Vocoder.from_checkpoint(tiny_ckpt)
    (plain,) = search(_TradeScorer(vocoder, clock, guard=()), [3], budget_s=30.0)
    assert plain.best.score == 0.1 and guard_scores(plain) == {} and plain.guard_met  # the metric alone: the default rule
    scorer = _TradeScorer(vocoder, clock)
    assert scorer.bounds() == {"log_mel": 0.5}
    (guarded,) = search(scorer, [3], budget_s=30.0)
    assert guarded.best.betas[0] == pytest.approx(2e-5) and guarded.best.score == 0.3  # the default rule's 1e-4 x 0.2
    assert guard_scores(guarded) == {"log_mel": 0.4} and guarded.guard_met
    assert guarded.best.guard == (GuardScore("log_mel", 0.4, 0.5, True),)  # stored with the schedule
    assert plain.best.guard == ()
    assert guarded.baselines["default"] == 0.1  # the baselines are still reported by the metric
    # a tie with the fast schedule meets the guard; when nothing meets it, the metric decides
    (tied,) = search(_TradeScorer(vocoder, clock, small_last=0.5), [3], budget_s=30.0)
    assert tied.guard_met and tied.best.score == 0.3
    (unmet,) = search(_TradeScorer(vocoder, clock, small_last=0.55), [3], budget_s=30.0)
    assert not unmet.guard_met and unmet.best.score == 0.1 and guard_scores(unmet) == {"log_mel": 0.6}
    assert unmet.best.guard == (GuardScore("log_mel", 0.6, 0.5, False),)
    # every other schedule meeting the guard (0.45): the metric picks among them, not the guard's margin
    (many,) = search(_TradeScorer(vocoder, clock, other_log_mel=0.45), [3], budget_s=30.0)
    assert many.guard_met and many.best.score == 0.3 and guard_scores(many) == {"log_mel": 0.4}
    with pytest.raises(AudiodiffError, match="--guard log_mel: the fast schedule's score on these clips is nan"):
        search(_TradeScorer(vocoder, clock, fast_log_mel=float("nan")), [3], budget_s=30.0)


def test_guard_scores_come_from_the_same_vocoding(tiny_ckpt, clips):
    vocoder = Vocoder.from_checkpoint(tiny_ckpt)
    audio = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in clips]
    scorer = ClipScorer(vocoder, audio, "log_mel", guard=["mr_stft", "log_mel"])
    assert scorer.guard == ("mr_stft",)  # the metric itself is no guard
    candidate = Candidate.geometric(1e-4, 0.5, 3)
    calls = []
    vocode = vocoder.vocode
    vocoder.vocode = lambda *a, **k: calls.append(1) or vocode(*a, **k)
    both = scorer.score_all(candidate)
    assert len(calls) == len(audio)  # one vocoding per clip serves every metric
    assert scorer.score_all(candidate) == both and len(calls) == len(audio)  # a repeat is not vocoded again
    fast6 = baseline_candidates(vocoder, 6)["default"]
    bounds = scorer.bounds()
    assert len(calls) == 2 * len(audio)  # the fast schedule, once
    assert scorer.score_all(fast6)["mr_stft"] == bounds["mr_stft"] and len(calls) == 2 * len(audio)
    vocoder.vocode = vocode
    assert set(both) == {"log_mel", "mr_stft"}
    assert both["log_mel"] == pytest.approx(ClipScorer(vocoder, audio, "log_mel").score(candidate))
    assert both["mr_stft"] == pytest.approx(ClipScorer(vocoder, audio, "mr_stft").score(candidate))
    fast = Candidate.of(inference_schedule(vocoder.recipe.diffusion, 6))
    assert scorer.bounds() == {"mr_stft": pytest.approx(scorer.score_all(fast)["mr_stft"])}
    with pytest.raises(AudiodiffError, match="--guard 'snr'"):
        ClipScorer(vocoder, audio, "log_mel", guard=["snr"])


def test_stored_schedule_is_used_and_reloaded(tmp_path, tiny_ckpt):
    data = load_checkpoint(tiny_ckpt)
    found = SearchedSchedule((2e-4, 0.05, 0.4), "ddim", 0.25, "pesq_wb", 3.5, 5)
    out = save_searched_copy(data, tmp_path / "searched.pt", {3: found}, default_steps=3)
    assert load_checkpoint(tiny_ckpt).defaults.schedules == {}  # the input is untouched
    again = load_checkpoint(out)
    assert again.defaults.schedules == {3: found} and again.defaults.steps == 3
    assert again.step == data.step and all(torch.equal(again.ema[k], v) for k, v in data.ema.items())
    vocoder = Vocoder.from_checkpoint(out)
    plan = vocoder.plan()
    assert plan.steps == 3 and plan.searched == found
    assert torch.allclose(plan.schedule.betas, torch.tensor([2e-4, 0.05, 0.4], dtype=torch.float64))
    assert (plan.sampler, plan.eta) == ("ddim", 0.25)
    ddpm = vocoder.plan(steps=3, sampler="ddpm")  # an explicit sampler keeps the betas
    assert (ddpm.sampler, ddpm.eta) == ("ddpm", 0.0) and torch.equal(ddpm.schedule.betas, plan.schedule.betas)
    assert torch.equal(vocoder.plan(steps=4).schedule.betas, inference_schedule(vocoder.recipe.diffusion, 4).betas)
    mel = torch.zeros(80, 4) - 5
    stored = vocoder.vocode(mel, seed=1)  # default: 3 steps, the searched schedule and sampler
    explicit = vocoder.vocode(mel, schedule=found.schedule, sampler="ddim", eta=0.25, seed=1)
    assert torch.equal(stored, explicit)
    assert not torch.equal(stored, vocoder.vocode(mel, steps=3, sampler="ddpm", seed=1))
    # a second search merges: 3 is kept, 2 is added
    two = SearchedSchedule((1e-3, 0.5), "ddpm", 0.0, "pesq_wb", 3.0, 5)
    merged = load_checkpoint(save_searched_copy(again, tmp_path / "merged.pt", {2: two}))
    assert merged.defaults.schedules == {2: two, 3: found} and merged.defaults.steps == 3


def test_searched_schedule_records_the_gain_adjust_setting():
    on = SearchedSchedule((1e-3, 0.5), "ddim", 1.0, "pesq_wb", 1.889, 5, gain_adjust=True)
    assert SearchedSchedule.from_dict(on.to_dict()) == on
    assert on.describe_score() == "pesq_wb 1.889 on 5 clips, with gain adjustment"
    raw = SearchedSchedule((1e-3, 0.5), "ddpm", 0.0, "log_mel", 0.7, 3, gain_adjust=False)
    assert raw.describe_score() == "log_mel 0.700 on 3 clips, raw"
    old = {"betas": [1e-3, 0.5], "sampler": "ddpm", "eta": 0.0, "metric": "pesq", "score": 2.0, "clips": 5}
    assert SearchedSchedule.from_dict(old).gain_adjust is None  # searched before it was recorded
    assert SearchedSchedule.from_dict(old).describe_score() == "pesq_wb 2.000 on 5 clips"  # an old name, read as today's
    assert "gain_adjust" not in SearchedSchedule.from_dict(old).to_dict()
    with pytest.raises(ValueError, match="gain_adjust must be true or false"):
        SearchedSchedule.from_dict({**old, "gain_adjust": "yes"})


def test_searched_schedule_records_its_guard():
    kept = SearchedSchedule((3e-5, 0.5), "ddim", 1.0, "pesq_wb", 2.522, 5, gain_adjust=True,
                            guard=(GuardScore("log_mel", 0.2105, 0.2175, True),))
    assert SearchedSchedule.from_dict(kept.to_dict()) == kept
    assert kept.to_dict()["guard"] == {"log_mel": {"score": 0.2105, "bound": 0.2175, "met": True}}
    assert kept.describe_score() == ("pesq_wb 2.522 on 5 clips, with gain adjustment, "
                                     "guard log_mel 0.2105 (fast schedule 0.2175, met)")
    missed = GuardScore("mr_stft", 1.2, 1.0, False)
    assert missed.describe() == "guard mr_stft 1.2000 (fast schedule 1.0000, not met)"
    assert "guard" not in SearchedSchedule((1e-3, 0.5)).to_dict()  # unguarded searches store none
    with pytest.raises(ValueError, match="guard log_mel: must be a table of score, bound and met"):
        SearchedSchedule.from_dict({**kept.to_dict(), "guard": {"log_mel": {"score": 0.2}}})
    with pytest.raises(ValueError, match="guard must be a table"):
        SearchedSchedule.from_dict({**kept.to_dict(), "guard": ["log_mel"]})


def test_bad_stored_schedule_is_one_line_error(tmp_path, tiny_ckpt):
    data = torch.load(tiny_ckpt, weights_only=True)
    data["schedules"] = {"3": {"betas": [0.1, 1.5], "sampler": "ddpm"}}
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt: searched schedule '3'") as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert "\n" not in str(info.value)


def test_cli_search_writes_copy_and_info_lists_it(tmp_path, tiny_ckpt, clips, run_main):
    out = tmp_path / "s.pt"
    result = run_main("schedule", "search", "-c", tiny_ckpt, *clips, "--steps", "2,3", "--metric", "log_mel",
                      "--budget-minutes", "0.02", "-o", out, "--default-steps", "2", "--gain-adjust")
    assert result.returncode == 0, result.stderr
    assert "searched" in result.stdout and "train sub-sampled" in result.stdout
    data = load_checkpoint(out)
    assert sorted(data.defaults.schedules) == [2, 3] and data.defaults.steps == 2
    assert all(found.gain_adjust is True for found in data.defaults.schedules.values())
    info = run_main("info", "-c", out)
    assert info.returncode == 0 and "searched 2-step schedule" in info.stdout and "default steps: 2" in info.stdout
    voc = run_main("vocode", "-c", out, clips[0], "-o", tmp_path / "v.wav")
    assert voc.returncode == 0 and "2 steps, searched schedule (log_mel" in voc.stderr
    assert sf.info(str(tmp_path / "v.wav")).frames == sf.info(str(clips[0])).frames


@pytest.mark.parametrize("kind, message", [("truncated", "cannot read checkpoint"),
                                           ("foreign", "not an audiodiff checkpoint")])
def test_cli_search_bad_checkpoint_one_line(tmp_path, tiny_ckpt, clips, run_main, kind, message):
    bad = tmp_path / "bad.pt"
    if kind == "truncated":
        bad.write_bytes(tiny_ckpt.read_bytes()[:2000])
    else:
        torch.save({"weights": torch.zeros(2)}, bad)
    result = run_main("schedule", "search", "-c", bad, *clips, "--metric", "log_mel", "-o", tmp_path / "o.pt")
    assert result.returncode == 2
    assert message in result.stderr and str(bad) in result.stderr.replace("\n", "")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "o.pt").exists()


def test_cli_search_with_a_guard_reports_it(tmp_path, tiny_ckpt, clips, run_main):
    out = tmp_path / "g.pt"
    result = run_main("schedule", "search", "-c", tiny_ckpt, *clips, "--steps", "2", "--metric", "mr_stft",
                      "--guard", "log_mel", "--budget-minutes", "0.01", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "guard log_mel (no worse than the fast schedule)" in result.stderr
    assert "searched log_mel (fast " in result.stdout  # the guard's column, with the fast schedule's score
    assert "best mr_stft" in result.stderr
    assert "(guard met)" in result.stderr or "(guard not met)" in result.stderr
    schedules = load_checkpoint(out).defaults.schedules
    assert sorted(schedules) == [2]
    stored = schedules[2]
    assert [g.metric for g in stored.guard] == ["log_mel"] and stored.guard[0].bound > 0
    info = run_main("info", "-c", out)
    assert info.returncode == 0 and "guard log_mel " in info.stdout and "(fast schedule " in info.stdout
    bad = run_main("schedule", "search", "-c", tiny_ckpt, *clips, "--guard", "log_mel,snr", "-o", tmp_path / "b.pt")
    assert bad.returncode == 2 and "'--guard': 'snr'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b.pt").exists()


def test_cli_search_refuses_to_overwrite_input(tiny_ckpt, clips, run_main):
    result = run_main("schedule", "search", "-c", tiny_ckpt, *clips, "-o", tiny_ckpt)
    assert result.returncode == 2 and "--overwrite" in result.stderr


def test_scorer_rejects_unknown_metric(tiny_ckpt):
    with pytest.raises(AudiodiffError, match="--metric 'snr'"):
        ClipScorer(Vocoder.from_checkpoint(tiny_ckpt), [torch.zeros(2048)], "snr")
