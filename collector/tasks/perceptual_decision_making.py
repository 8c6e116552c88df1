"""PerceptualDecisionMaking-v0 (neurogym 2.3.1, envs/native/perceptualdecisionmaking.py).

obs = [fixation, stim_1..stim_R]: the fixation cue in `fixation`, cos(theta - theta_gt) * coh / 200
+ 0.5 plus noise on the ring in `stimulus`; trial = {ground_truth in 0..R-1, coh}; correct action =
ground_truth + 1 in `decision`. Keyword arguments: dt, sigma, timing, rewards, dim_ring, cohs, abort.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from collector.tasks.base import _F32, _I32, TrialTask, _is_number, _pick, _take, check_dim_ring


@dataclasses.dataclass(frozen=True)
class PerceptualDecisionMaking(TrialTask):
    """obs = [fixation, stim_1..stim_R]; trial = {ground_truth in 0..R-1, coh};
    correct action = ground_truth + 1."""

    dim_ring: int = 2

    name: ClassVar[str] = "PerceptualDecisionMaking-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus", "delay", "decision")
    default_timing: ClassVar[dict] = {"fixation": 100, "stimulus": 2000, "delay": 0, "decision": 100}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "sigma", "timing", "rewards", "dim_ring", "cohs", "abort")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "coh")
    n_trial_u: ClassVar[int] = 2
    noise: ClassVar[dict] = {"stimulus": "ring"}

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
        return {"ground_truth": _pick(u[0], jnp.arange(self.dim_ring, dtype=_I32)),
                "coh": _pick(u[1], params.cohs)}

    def _complete_trial(self, trial, params, steps):
        theta = jnp.asarray(self._theta(), _F32)
        stim = jnp.cos(theta - _take(theta, trial["ground_truth"])) * (trial["coh"] / 200) + 0.5
        return trial, stim.astype(_F32)

    def gt_action(self, trial):
        return trial["ground_truth"].astype(_I32) + 1

    def _obs(self, p, state, noise):
        fix = (p == 0).astype(_F32)
        stim = jnp.where(p == 1, state.stim + noise, 0.0)
        return jnp.concatenate([fix[None], stim]).astype(_F32)

    @classmethod
    def make(cls, **kw):
        env = cls(dim_ring=check_dim_ring(cls.name, kw))
        cohs = kw.pop("cohs", None) or [0, 6.4, 12.8, 25.6, 51.2]  # neurogym: `cohs or default`
        if not all(_is_number(c) for c in cohs):
            raise ValueError(f"{cls.name}: cohs must be numbers, got {cohs!r}")
        return env, env._make_params(cohs=list(cohs), **kw)
