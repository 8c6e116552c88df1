"""DelayMatchSampleDistractor1D-v0 (neurogym 2.3.1, envs/native/delaymatchsample.py).

A sample direction is shown, then three test directions separated by delays; exactly one test (the
ground_truth-th) repeats the sample, the two others are distractors drawn uniformly on the circle.
The subject must act (action 1, "match") during the matching test and hold (action 0) everywhere
else.

obs = [fixation, stim_1..stim_32]: the fixation cue in `fixation` only; the 32-channel ring
(theta = 2 pi k / 32) shows cos(theta - sample) in `sample` and cos(theta - test_i) in `test<i>`,
zero in the delays. No noise: neurogym's constructor takes `sigma` but never adds noise, so the port
accepts `sigma` and ignores it too. trial = {ground_truth in {1, 2, 3}, sample in [0, 2 pi),
test1..test3}: test<ground_truth> = sample, the others uniform in [0, 2 pi). Forcing a distractor
test<i> is a port extension (neurogym draws them after applying the forced values and so ignores
them); a forced test<ground_truth> is overwritten by the sample, as in neurogym. Ground truth = 1
during test<ground_truth>, 0 elsewhere.

Rules (neurogym's _step, which fits neither the base's single abort period nor its single decision
period, hence the `step` override): a non-zero action in `fixation` or `sample` costs `abort` (the
trial goes on: neurogym's abort is False); anywhere after the sample, a non-zero action ends the
trial, with `correct` (performance 1) during the matching test and `fail` elsewhere (the delays and
the distractor tests). A trial without response ends after test3 with reward 0.
Keyword arguments: dt, rewards, timing, sigma (no effect, as in neurogym).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import (_F32, _I32, EnvParams, EnvState, TrialTask, _pick, _uniforms_and_normals,
                                  period_index)

_TWO_PI = np.float32(2 * np.pi)


@dataclasses.dataclass(frozen=True)
class DelayMatchSampleDistractor1D(TrialTask):
    name: ClassVar[str] = "DelayMatchSampleDistractor1D-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "sample", "delay1", "test1", "delay2", "test2", "delay3",
                                          "test3")
    default_timing: ClassVar[dict] = {"fixation": 300, "sample": 500, "delay1": 1000, "test1": 500,
                                      "delay2": 1000, "test2": 500, "delay3": 1000, "test3": 500}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": -1.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "sigma")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "sample", "test1", "test2", "test3")
    n_trial_u: ClassVar[int] = 5
    abort_period: ClassVar[str | None] = None  # `step` below states the rules
    decision_period: ClassVar[str | None] = None
    obs_dim: ClassVar[int] = 33
    num_actions: ClassVar[int] = 2

    def sample_trial(self, u, params):
        """ground_truth int32 in {1, 2, 3}; sample and the three tests float32 angles in [0, 2 pi)."""
        return {"ground_truth": _pick(u[0], jnp.asarray([1, 2, 3], _I32)), "sample": u[1] * _TWO_PI,
                "test1": u[2] * _TWO_PI, "test2": u[3] * _TWO_PI, "test3": u[4] * _TWO_PI}

    def observations(self, trial, params, steps):
        g = trial["ground_truth"]
        tests = [jnp.where(g == i, trial["sample"], trial[f"test{i}"]).astype(_F32) for i in (1, 2, 3)]
        trial = {**trial, "test1": tests[0], "test2": tests[1], "test3": tests[2]}
        theta = jnp.asarray(np.arange(0, 2 * np.pi, 2 * np.pi / 32), _F32)  # neurogym's ring

        def ring(angle):
            return jnp.concatenate([jnp.zeros(1, _F32), jnp.cos(theta - angle)])

        fix = jnp.zeros(33, _F32).at[0].set(1.0)
        off = jnp.zeros(33, _F32)
        rows = [fix, ring(trial["sample"]), off, ring(tests[0]), off, ring(tests[1]), off, ring(tests[2])]
        return trial, jnp.stack(rows)

    def _match_period(self, state: EnvState) -> jnp.ndarray:
        """Index in `periods` of test<ground_truth>."""
        return 1 + 2 * state.trial["ground_truth"].astype(_I32)

    def gt_now(self, state, params=None):
        return (period_index(state) == self._match_period(state)).astype(_I32)

    def step(self, key, state: EnvState, action, params: EnvParams):
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        action = jnp.asarray(action, _I32)
        p = period_index(state)
        moved = action != 0
        early = p <= 1  # fixation or sample
        match = p == self._match_period(state)
        correct = match & (action == 1)
        reward = jnp.where(early & moved, params.rewards["abort"],
                           jnp.where(~early & moved,
                                     jnp.where(correct, params.rewards["correct"], params.rewards["fail"]),
                                     0.0)).astype(_F32)
        ended = (~early & moved) | (early & moved & params.abort)
        timeout = state.t + 1 >= state.ends[-1]
        return self._advance(u, z, state, params, ended | timeout, reward, self.gt_now(state), correct)

    def shortest_trial(self, params):
        """The first step after the sample can end a trial (or the trial's end, if sooner)."""
        mins = [int(pt.min_steps) for pt in params.timing]
        return max(1, min(sum(mins), mins[0] + mins[1] + 1))
