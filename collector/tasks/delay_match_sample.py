"""DelayMatchSample-v0 (neurogym 2.3.1, envs/native/delaymatchsample.py).

obs = [fixation, stim_1..stim_R]: the fixation cue until `decision`, the sample direction on the
ring (cos(theta - sample_theta) / 2 + 0.5, plus noise) in `sample`, the test direction in `test`;
trial = {ground_truth in {1 (match), 2 (non-match)}, sample_theta, test_theta}; correct action =
ground_truth. Keyword arguments: dt, sigma, timing, rewards, dim_ring.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import _F32, _I32, TrialTask, _pick, check_dim_ring


@dataclasses.dataclass(frozen=True)
class DelayMatchSample(TrialTask):
    """obs = [fixation, stim_1..stim_R]; trial = {ground_truth in {1 (match), 2 (non-match)},
    sample_theta, test_theta}; correct action = ground_truth."""

    dim_ring: int = 2

    name: ClassVar[str] = "DelayMatchSample-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "sample", "delay", "test", "decision")
    default_timing: ClassVar[dict] = {"fixation": 300, "sample": 500, "delay": 1000, "test": 500,
                                      "decision": 900}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "sigma", "timing", "rewards", "dim_ring")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "sample_theta")
    n_trial_u: ClassVar[int] = 2
    noise: ClassVar[dict] = {"sample": "ring", "test": "ring"}

    @property
    def num_actions(self) -> int:
        return 1 + self.dim_ring

    @property
    def obs_dim(self) -> int:
        return 1 + self.dim_ring

    @property
    def noise_dim(self) -> int:
        return self.dim_ring

    def sample_trial(self, u, params):
        return {"ground_truth": _pick(u[0], jnp.asarray([1, 2], _I32)),
                "sample_theta": _pick(u[1], jnp.asarray(self._theta(), _F32))}

    def _complete_trial(self, trial, params, steps):
        theta = jnp.asarray(self._theta(), _F32)
        s = trial["sample_theta"]
        two_pi = np.float32(2 * np.pi)
        flipped = s + np.float32(np.pi)
        flipped = flipped - two_pi * jnp.floor(flipped / two_pi)  # np.mod(s + pi, 2 pi); fmod is slow
        test = jnp.where(trial["ground_truth"] == 1, s, flipped).astype(_F32)
        trial = {**trial, "test_theta": test}
        stim = jnp.concatenate([jnp.cos(theta - s), jnp.cos(theta - test)]) * 0.5 + 0.5
        return trial, stim.astype(_F32)

    def _obs(self, p, state, noise):
        r = self.dim_ring
        fix = (p < 4).astype(_F32)
        stim = jnp.where(p == 1, state.stim[:r] + noise, jnp.where(p == 3, state.stim[r:] + noise, 0.0))
        return jnp.concatenate([fix[None], stim]).astype(_F32)

    @classmethod
    def make(cls, **kw):
        env = cls(dim_ring=check_dim_ring(cls.name, kw))
        return env, env._make_params(cohs=[], **kw)
