"""PerceptualDecisionMakingDelayResponse-v0 (neurogym 2.3.1, envs/native/perceptualdecisionmaking.py).

Two stimuli of opposite strength are shown; after a delay the subject reports which was stronger.

obs = [fixation, stim_1, stim_2]: [1, 0, 0] in `fixation` (0 ms by default) and `delay`; in
`stimulus` the fixation cue stays on, stim_gt = (1 + coh/100) / 2 and the other (1 - coh/100) / 2,
plus noise of std trial["sigma"] (= sigma / sqrt(dt)) on the two stimulus channels; all zeros in
`decision`. trial = {ground_truth in {1, 2}, coh in cohs * stim_scale, sigma}; correct action =
ground_truth in `decision`. Keyword arguments: dt, rewards, timing, stim_scale, sigma.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import _F32, _I32, TrialTask, _is_number, _pick


@dataclasses.dataclass(frozen=True)
class PerceptualDecisionMakingDelayResponse(TrialTask):
    name: ClassVar[str] = "PerceptualDecisionMakingDelayResponse-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus", "delay", "decision")
    default_timing: ClassVar[dict] = {"fixation": 0, "stimulus": 1150,
                                      "delay": (300, 500, 700, 900, 1200, 2000, 3200, 4000),
                                      "decision": 1500}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "stim_scale", "sigma")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "coh", "sigma")
    n_trial_u: ClassVar[int] = 2
    noise: ClassVar[dict] = {"stimulus": (1, 2)}
    obs_dim: ClassVar[int] = 3
    num_actions: ClassVar[int] = 3

    def params_extra(self, kw):
        scale = kw.pop("stim_scale", 1.0)
        if not _is_number(scale):
            raise ValueError(f"{self.name}: stim_scale must be a number, got {scale!r}")
        return {"cohs": np.asarray([0, 6.4, 12.8, 25.6, 51.2], np.float64).astype(np.float32) * np.float32(scale)}

    def sample_trial(self, u, params):
        return {"ground_truth": _pick(u[0], jnp.asarray([1, 2], _I32)),
                "coh": _pick(u[1], params.extra["cohs"]),
                "sigma": (params.sigma / jnp.sqrt(params.dt)).astype(_F32)}

    def observations(self, trial, params, steps):
        c = trial["coh"] / 100
        hi, lo = (1 + c) / 2, (1 - c) / 2
        first = trial["ground_truth"] == 1
        one, zero = jnp.float32(1), jnp.float32(0)
        fix = jnp.stack([one, zero, zero])
        stim = jnp.stack([one, jnp.where(first, hi, lo), jnp.where(first, lo, hi)])
        return trial, jnp.stack([fix, stim, fix, jnp.zeros(3, _F32)]).astype(_F32)

    def noise_std(self, state, params):
        # neurogym draws the stimulus noise with trial["sigma"] (= sigma / sqrt(dt) unless forced)
        return state.trial["sigma"]
