"""DelayMatchCategory-v0 (neurogym 2.3.1, envs/native/delaymatchcategory.py).

A sample direction is shown, then after a delay a test direction; the subject reports during the
test whether both fall in the same category (half of the circle: [0, pi) or [pi, 2 pi)).

obs = [fixation, stim_1..stim_R]: the fixation cue in every period but `test`; the ring shows
cos(theta - sample_theta) * 0.5 + 0.5 in `sample` and the same for test_theta in `test`, with
noise (sigma / sqrt(dt)) on the ring in both. trial = {ground_truth: 1 (match) or 2 (non-match),
sample_category in {0, 1}, sample_pos, test_pos in [0, 1)}, derived: test_category
(= sample_category on a match), sample_theta = (sample_category + sample_pos) * pi, test_theta =
(test_category + test_pos) * pi. Neurogym's ground_truth is the string "match" / "non-match";
new_trial accepts those (or 1 / 2) and stores the action. The positions are neurogym's two
`rng.rand()` draws; forcing them (a port extension) pins the directions. Correct action =
ground_truth in `test`, which is also the response period (there is no `decision` period).
Keyword arguments: dt, rewards, timing, sigma, dim_ring.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import _F32, _I32, TrialTask, _pick, check_dim_ring

_GT = {"match": 1, "non-match": 2}


@dataclasses.dataclass(frozen=True)
class DelayMatchCategory(TrialTask):
    dim_ring: int = 2

    name: ClassVar[str] = "DelayMatchCategory-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "sample", "first_delay", "test")
    default_timing: ClassVar[dict] = {"fixation": 500, "sample": 650, "first_delay": 1000, "test": 650}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "sigma", "dim_ring")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "sample_category", "sample_pos", "test_pos")
    n_trial_u: ClassVar[int] = 4
    decision_period: ClassVar[str] = "test"
    num_actions: ClassVar[int] = 3

    @property
    def noise(self) -> dict:
        ring = tuple(range(1, 1 + self.dim_ring))
        return {"sample": ring, "test": ring}

    @property
    def obs_dim(self) -> int:
        return 1 + self.dim_ring

    @classmethod
    def make(cls, **kw):
        env = cls(dim_ring=check_dim_ring(cls.name, kw))
        return env, env._make_params(**kw)

    def sample_trial(self, u, params):
        return {"ground_truth": _pick(u[0], jnp.asarray([1, 2], _I32)),
                "sample_category": _pick(u[1], jnp.asarray([0, 1], _I32)),
                "sample_pos": u[2], "test_pos": u[3]}

    def forced_value(self, key, value, like):
        if key == "ground_truth" and isinstance(value, str):
            if value not in _GT:
                raise ValueError(f"{self.name}: ground_truth must be 'match' or 'non-match', got {value!r}")
            value = _GT[value]
        return jnp.asarray(value, like.dtype)

    def observations(self, trial, params, steps):
        cat = trial["sample_category"]
        test_cat = jnp.where(trial["ground_truth"] == 1, cat, 1 - cat)
        s = (cat + trial["sample_pos"]) * np.float32(np.pi)
        t = (test_cat + trial["test_pos"]) * np.float32(np.pi)
        trial = {**trial, "test_category": test_cat, "sample_theta": s, "test_theta": t}
        theta = jnp.asarray(np.linspace(0, 2 * np.pi, self.dim_ring + 1)[:-1], _F32)
        r = self.dim_ring
        fix = jnp.concatenate([jnp.ones(1, _F32), jnp.zeros(r, _F32)])
        sample = jnp.concatenate([jnp.ones(1, _F32), jnp.cos(theta - s) * 0.5 + 0.5])
        test = jnp.concatenate([jnp.zeros(1, _F32), jnp.cos(theta - t) * 0.5 + 0.5])
        return trial, jnp.stack([fix, sample, fix, test]).astype(_F32)
