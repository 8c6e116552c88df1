"""DualDelayMatchSample-v0 (neurogym 2.3.1, envs/native/dualdelaymatchsample.py).

Two samples are shown at once; after a delay a cue says which of them is tested first, then a test
stimulus appears and the subject reports match (action 1) or non-match (action 2); then a second
cue and test for the other sample.

obs = [fixation, stimulus1 (2), stimulus2 (2), cue1, cue2]: the fixation cue on every step of the
trial (neurogym adds it without a period and never clears it); in `sample` stimulus1 shows
[cos, sin](sample1 * pi) and stimulus2 the same of sample2. With test_order 0 the `cue1` period shows
cue1, `test1` shows test1 on stimulus1 (ground truth ground_truth1), `cue2` shows cue2 and `test2`
shows test2 on stimulus2 (ground truth ground_truth2); with test_order 1 the periods swap their
contents: `cue1` shows cue2, `test1` shows test2 on stimulus2 (ground truth ground_truth2), `cue2`
shows cue1, `test2` shows test1 on stimulus1 (ground truth ground_truth1). test_k = sample_k on a
match (ground_truth_k = 1), else 0.5 - sample_k. Noise (sigma / sqrt(dt)) on every channel in
`sample`, `test1` and `test2`. trial = {ground_truth1, ground_truth2 in {1, 2}, sample1, sample2 in
{0, 0.5}, test_order in {0, 1}}, derived: test1, test2.

Rules (neurogym's _step; two response periods, the first of which does not end the trial, hence
the `step` override): in `test1` every non-zero action is rewarded, `correct` if it equals the
ground truth (and the trial's performance becomes 1), else `fail`; the trial goes on. In `test2` the
first non-zero action ends the trial with `correct` (performance 1) or `fail`. Anywhere else a
non-zero action costs `abort` (the trial goes on: neurogym's abort is False). A trial without a
response in `test2` ends after it with reward 0. The performance reported when a trial ends is 1 if
ANY response of the trial was correct (neurogym never resets it within a trial: a correct answer
in `test1` followed by a wrong one in `test2`, or by none, still reports 1); the port keeps that
flag in trial["answered_correctly"]. So answering both 1 and 2 within `test1` reaches performance 1
without looking at the stimuli (with the default `fail` = 0 it costs no reward either).
Keyword arguments: dt, rewards, timing, sigma.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import (_F32, _I32, EnvParams, EnvState, TrialTask, _pick, _uniforms_and_normals,
                                  period_index)

_TEST1, _TEST2 = 4, 7  # indices of `test1` and `test2` in `periods`


@dataclasses.dataclass(frozen=True)
class DualDelayMatchSample(TrialTask):
    name: ClassVar[str] = "DualDelayMatchSample-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "sample", "delay1", "cue1", "test1", "delay2", "cue2",
                                          "test2")
    default_timing: ClassVar[dict] = {p: 500 for p in periods}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "sigma")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth1", "ground_truth2", "sample1", "sample2", "test_order")
    n_trial_u: ClassVar[int] = 5
    abort_period: ClassVar[str | None] = None  # `step` below states the rules
    decision_period: ClassVar[str | None] = None
    noise: ClassVar[dict] = {"sample": "all", "test1": "all", "test2": "all"}
    obs_dim: ClassVar[int] = 7
    num_actions: ClassVar[int] = 3

    def sample_trial(self, u, params):
        """Ground truths int32 in {1, 2}, samples float32 in {0, 0.5}, test_order int32 in {0, 1}."""
        gts, halves = jnp.asarray([1, 2], _I32), jnp.asarray([0.0, 0.5], _F32)
        return {"ground_truth1": _pick(u[0], gts), "ground_truth2": _pick(u[1], gts),
                "sample1": _pick(u[2], halves), "sample2": _pick(u[3], halves),
                "test_order": _pick(u[4], jnp.asarray([0, 1], _I32)),
                "answered_correctly": jnp.zeros((), _F32)}

    def observations(self, trial, params, steps):
        s1, s2 = trial["sample1"].astype(_F32), trial["sample2"].astype(_F32)
        t1 = jnp.where(trial["ground_truth1"] == 1, s1, 0.5 - s1)
        t2 = jnp.where(trial["ground_truth2"] == 1, s2, 0.5 - s2)
        trial = {**trial, "test1": t1, "test2": t2}
        pi = np.float32(np.pi)

        def vec(*chans):  # the 7 channels, fixation cue on
            return jnp.stack([jnp.float32(1), *[jnp.asarray(c, _F32) for c in chans]])

        def angle(x):
            return jnp.cos(x * pi), jnp.sin(x * pi)

        z = jnp.float32(0)
        first = trial["test_order"] == 0
        fix = vec(z, z, z, z, z, z)
        sample = vec(*angle(s1), *angle(s2), z, z)
        test_a = vec(*angle(t1), z, z, z, z)  # test1 on stimulus1
        test_b = vec(z, z, *angle(t2), z, z)  # test2 on stimulus2
        cue_a, cue_b = vec(z, z, z, z, 1, z), vec(z, z, z, z, z, 1)
        rows = [fix, sample, fix,
                jnp.where(first, cue_a, cue_b), jnp.where(first, test_a, test_b), fix,
                jnp.where(first, cue_b, cue_a), jnp.where(first, test_b, test_a)]
        return trial, jnp.stack(rows)

    def gt_now(self, state, params=None):
        tr = state.trial
        first = tr["test_order"] == 0
        p = period_index(state)
        g1 = jnp.where(first, tr["ground_truth1"], tr["ground_truth2"])  # in the `test1` period
        g2 = jnp.where(first, tr["ground_truth2"], tr["ground_truth1"])  # in the `test2` period
        return jnp.where(p == _TEST1, g1, jnp.where(p == _TEST2, g2, 0)).astype(_I32)

    def step(self, key, state: EnvState, action, params: EnvParams):
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        action = jnp.asarray(action, _I32)
        p = period_index(state)
        gt = self.gt_now(state)
        moved = action != 0
        testing = (p == _TEST1) | (p == _TEST2)
        correct = testing & moved & (action == gt)
        reward = jnp.where(testing & moved, jnp.where(correct, params.rewards["correct"], params.rewards["fail"]),
                           jnp.where(moved, params.rewards["abort"], 0.0)).astype(_F32)
        perf = jnp.maximum(state.trial["answered_correctly"], correct.astype(_F32))
        ended = ((p == _TEST2) & moved) | (~testing & moved & params.abort)
        timeout = state.t + 1 >= state.ends[-1]
        state = state.replace(trial={**state.trial, "answered_correctly": perf})
        return self._advance(u, z, state, params, ended | timeout, reward, gt, perf > 0)

    def shortest_trial(self, params):
        """The first step of `test2` can end a trial."""
        mins = [int(pt.min_steps) for pt in params.timing]
        return max(1, min(sum(mins), sum(mins[:_TEST2]) + 1))
