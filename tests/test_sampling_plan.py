"""The sampling plan: one resolver, one override order (explicit > searched > checkpoint default > recipe rule)."""
from __future__ import annotations

import pytest
import torch

from audiodiff.diffusion import Schedule, inference_schedule
from audiodiff.errors import AudiodiffError
from audiodiff.inference_defaults import InferenceDefaults
from audiodiff.recipe import load_recipe
from audiodiff.sampling_plan import Overrides, SamplingPlan, resolve_plan, rule_steps
from audiodiff.searched_schedule import SearchedSchedule

from conftest import TINY

VOCODER = load_recipe(TINY, ["data.root=/nowhere"])
GENERATOR = load_recipe(TINY, ["data.root=/nowhere", "model.conditional=false"])
SEARCHED_4 = SearchedSchedule(betas=(1e-4, 2e-3, 3e-2, 0.5), sampler="ddim", eta=0.7, metric="pesq", score=2.5, clips=5)
SEARCHED_3 = SearchedSchedule(betas=(1e-4, 1e-2, 0.5), sampler="ddpm")
STORED = InferenceDefaults(steps=4, gain_adjust=True, refine=2, schedules={4: SEARCHED_4, 3: SEARCHED_3})


def plan(defaults: InferenceDefaults = InferenceDefaults(), recipe=VOCODER, **request) -> SamplingPlan:
    return resolve_plan(Overrides(**request), defaults, recipe)


def betas(p: SamplingPlan) -> list[float]:
    return p.schedule.betas.tolist()


def test_the_recipe_rule_when_nothing_else_says():
    p = plan()
    fast = VOCODER.diffusion.fast_steps
    assert (p.steps, p.sampler, p.eta, p.gain_adjust, p.refine, p.searched) == (fast, "ddpm", 0.0, False, 0, None)
    assert betas(p) == list(VOCODER.diffusion.fast_betas)
    assert plan(recipe=GENERATOR).steps == rule_steps(GENERATOR) == 50
    assert betas(plan(steps=3)) == inference_schedule(VOCODER.diffusion, 3).betas.tolist()


def test_the_checkpoint_default_beats_the_recipe_rule():
    p = plan(InferenceDefaults(steps=5, gain_adjust=True, refine=2))
    assert (p.steps, p.gain_adjust, p.refine, p.sampler) == (5, True, 2, "ddpm")
    assert betas(p) == inference_schedule(VOCODER.diffusion, 5).betas.tolist()  # no searched 5: the rule's betas


def test_the_searched_schedule_beats_the_checkpoint_default_and_the_rule():
    p = plan(STORED)  # default steps 4, searched at 4: its betas, sampler and eta
    assert (p.steps, p.sampler, p.eta, p.searched) == (4, "ddim", 0.7, SEARCHED_4)
    assert betas(p) == list(SEARCHED_4.betas)
    p3 = plan(STORED, steps=3)  # the searched schedule for the step count asked for
    assert (betas(p3), p3.sampler, p3.eta) == (list(SEARCHED_3.betas), "ddpm", 0.0)
    assert plan(STORED, steps=5).searched is None  # none searched at 5: the rule


def test_an_explicit_argument_beats_everything_below_it():
    assert plan(STORED, steps=6).steps == 6
    p = plan(STORED, sampler="ddpm")  # searched betas kept, its ddim eta not used with another sampler
    assert (betas(p), p.sampler, p.eta) == (list(SEARCHED_4.betas), "ddpm", 0.0)
    assert plan(STORED, eta=0.2).eta == 0.2
    assert plan(STORED, sampler="ddim").eta == 0.7  # the searched eta goes with its own sampler
    given = Schedule.from_betas([0.01, 0.2, 0.6, 0.9])
    p = plan(STORED, schedule=given, sampler="ddim")  # an explicit schedule replaces the searched one
    assert (betas(p), p.searched, p.eta) == (given.betas.tolist(), None, 0.0)
    assert plan(STORED, schedule=Schedule.from_betas([0.1, 0.5])).steps == 2  # it fixes the step count
    p = plan(STORED, gain_adjust=False, refine=0)
    assert (p.gain_adjust, p.refine) == (False, 0)


def test_a_generator_takes_no_mel_consistency():
    p = plan(InferenceDefaults(gain_adjust=True, refine=3), recipe=GENERATOR)
    assert (p.gain_adjust, p.refine) == (False, 0)
    with pytest.raises(AudiodiffError, match="vocoders"):
        plan(recipe=GENERATOR, refine=2)


@pytest.mark.parametrize("request_, words", [
    ({"steps": 0}, "steps 0"), ({"sampler": "euler"}, "unknown sampler 'euler'"), ({"eta": 1.5}, "eta 1.5"),
    ({"refine": -1}, "refine -1"), ({"steps": 3, "schedule": Schedule.from_betas([0.1, 0.5])}, "steps 3"),
])
def test_bad_requests_are_one_line(request_, words):
    with pytest.raises(AudiodiffError, match=words) as info:
        plan(STORED, **request_)
    assert "\n" not in str(info.value)


def test_describe_and_equality():
    p = plan(STORED)
    assert p.describe() == "4 steps, searched schedule (pesq_wb 2.500 on 5 clips), ddim eta 0.7, mel gain adjustment, 2 refinement iterations"
    assert plan().describe() == f"{VOCODER.diffusion.fast_steps} steps, default schedule, ddpm"
    assert p == plan(STORED) and p != plan(STORED, steps=3) and p != plan(STORED, eta=0.6)
    assert torch.equal(p.schedule.betas, plan(STORED).schedule.betas)


def test_inherited_defaults_say_where_they_came_from():
    inherited = STORED.inherited("kathleen-12x32-infer")
    assert inherited.describe() == "defaults inherited from kathleen-12x32-infer"
    assert all(s.inherited_from == "kathleen-12x32-infer" for s in inherited.schedules.values())
    assert plan(inherited) == plan(STORED)  # inheriting changes where they came from, not the plan
    assert "inherited from kathleen-12x32-infer" in plan(inherited).describe()
    assert inherited.inherited("child.pt") == inherited  # a grandchild keeps the origin
    own = inherited.with_settings(steps=3)
    assert own.inherited_from is None and own.steps == 3 and own.schedules == inherited.schedules
    assert InferenceDefaults().inherited("x") == InferenceDefaults()
    assert "no inference defaults" in InferenceDefaults().describe()
    assert STORED.describe() == "the checkpoint's own defaults"


def test_only_an_inherited_schedule_gets_the_stale_note():
    from audiodiff.model_info import inherited_schedule_note

    inherited = STORED.inherited("parent.pt")
    text = inherited_schedule_note(plan(inherited))
    assert text.startswith("the 4-step schedule was searched on parent.pt, not on these weights")
    assert "audiodiff schedule search" in text
    assert inherited_schedule_note(plan(inherited, steps=3)).startswith("the 3-step schedule was searched on parent.pt")
    assert inherited_schedule_note(plan(STORED)) is None  # searched on this model
    assert inherited_schedule_note(plan(inherited, steps=2)) is None  # no searched schedule for 2: the rule
    explicit = Schedule.from_betas((1e-4, 1e-2, 0.3, 0.5))
    assert inherited_schedule_note(plan(inherited, schedule=explicit, sampler="ddpm")) is None
