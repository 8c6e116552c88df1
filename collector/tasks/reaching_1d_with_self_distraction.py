"""Reaching1DWithSelfDistraction-v0 (neurogym 2.3.1, envs/native/reaching.py).

Reaching1D (collector/tasks/reaching_1d.py: the arm, the reward, the performance, the integer
ground truth, all as there) with one ring of 32 channels in which the arm's own signal overshadows
the target: obs = 0.3 cos(theta - ground_truth) in `reach` (0 in `fixation`) + cos(theta - arm) on
every step, theta = neurogym's np.arange(0, 2 pi, 2 pi / 32). No noise, no dim_ring.
Keyword arguments: dt, rewards, timing.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import _F32
from collector.tasks.reaching_1d import Reaching1D

_RING = 32  # neurogym's fixed ring size for this task


@dataclasses.dataclass(frozen=True)
class Reaching1DWithSelfDistraction(Reaching1D):
    dim_ring: int = _RING

    name: ClassVar[str] = "Reaching1DWithSelfDistraction-v0"
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing")

    @property
    def obs_dim(self) -> int:
        return _RING

    @classmethod
    def make(cls, **kw):
        env = cls()
        return env, env._make_params(**kw)

    def _complete_trial(self, trial, params, steps):
        # state.stim = the (weak) target signal added in `reach`
        return trial, (jnp.cos(self._theta() - trial["ground_truth"]) * np.float32(0.3)).astype(_F32)

    def _obs(self, p, state, noise):
        target = jnp.where(p == 1, state.stim, 0.0)
        return (target + jnp.cos(self._theta() - state.arm)).astype(_F32)
