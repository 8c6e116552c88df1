"""Reaching1D-v0 (neurogym 2.3.1, envs/native/reaching.py).

The subject moves an arm on a circle (action 1: +0.05 rad, 2: -0.05 rad, 0: stay) and is rewarded,
on every step of the `reach` period, for being close to the target direction.

obs = [target_1..target_R, self_1..self_R] (R = dim_ring, 16 by default; theta = neurogym's
np.arange(0, 2 pi, 2 pi / R)): the target ring cos(theta - ground_truth) in `reach` only, and on
every step the arm ring cos(theta - arm), arm being the arm angle after the action just taken
(neurogym's post_step). No noise (neurogym's task has no `sigma`). trial = {ground_truth ~ U(0, 2 pi)
(may be forced)}; the arm starts every trial at pi and moves in every period (mod 2 pi).

Reward (neurogym's _step): 0 in `fixation`; in `reach`, r = max(rewards["correct"] - d,
rewards["fail"]) with d the circular distance between the (moved) arm and the step's ground truth,
and the trial's performance grows by (r - fail) / (correct - fail) / (number of reach steps), so a
trial's performance is a number in [0, 1], reported on its last step. Trials end only by timeout.

Neurogym quirks reproduced: its ground-truth buffer has the integer dtype of the action space, so
the ground truth is int(pi) = 3 in `fixation` and int(ground_truth) (0..6 rad) in `reach`; info["gt"]
and the reward's target are that integer, not the direction the target ring shows.

The port needs two per-step variables, the arm and the running performance: they live in
`ReachState` (the base's state plus `arm` and `perf`), and `step` is the task's own.
Keyword arguments: dt, rewards, timing, dim_ring (a dim_ring for which neurogym's arange has
dim_ring + 1 angles, e.g. 61, fails in neurogym and is refused here).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from collector.tasks.base import _F32, _I32, EnvState, TrialTask, _uniforms_and_normals, period_index

_TWO_PI = np.float32(2 * np.pi)
_STEP = np.float32(0.05)  # neurogym's arm increment per action (rad)


@struct.dataclass
class ReachState(EnvState):
    """The base state plus the arm angle and the trial's running performance."""

    arm: jax.Array = 0.0  # float32, rad in [0, 2 pi); pi at every trial start
    perf: jax.Array = 0.0  # float32, sum so far of this trial's normalized reach rewards / reach steps


def ring_theta(task: str, n: int) -> np.ndarray:
    """Neurogym's ring angles np.arange(0, 2 pi, 2 pi / n), refusing an n whose arange has n + 1."""
    theta = np.arange(0, 2 * np.pi, 2 * np.pi / n)
    if len(theta) != n:
        raise ValueError(f"{task}: dim_ring={n} gives neurogym {len(theta)} ring angles (np.arange "
                         f"rounding), and its observations fail")
    return theta


def circular_dist(x: jax.Array) -> jax.Array:
    """neurogym.utils.tasktools.circular_dist: min(|x|, 2 pi - |x|)."""
    return jnp.minimum(jnp.abs(x), _TWO_PI - jnp.abs(x))


@dataclasses.dataclass(frozen=True)
class Reaching1D(TrialTask):
    dim_ring: int = 16

    name: ClassVar[str] = "Reaching1D-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "reach")
    default_timing: ClassVar[dict] = {"fixation": 500, "reach": 500}
    default_rewards: ClassVar[dict] = {"correct": 1.0, "fail": -0.1}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "dim_ring")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth",)
    n_trial_u: ClassVar[int] = 1
    abort_period: ClassVar[str | None] = None
    decision_period: ClassVar[str | None] = None
    num_actions: ClassVar[int] = 3

    @property
    def obs_dim(self) -> int:
        return 2 * self.dim_ring

    @property
    def ring(self) -> int:
        """Channels of each ring."""
        return self.dim_ring

    @classmethod
    def make(cls, **kw):
        dim_ring = kw.pop("dim_ring", 16)
        if isinstance(dim_ring, bool) or not isinstance(dim_ring, int | np.integer) or dim_ring < 1:
            raise ValueError(f"{cls.name}: dim_ring must be a positive int, got {dim_ring!r}")
        ring_theta(cls.name, int(dim_ring))
        env = cls(dim_ring=int(dim_ring))
        return env, env._make_params(**kw)

    def _theta(self):
        return jnp.asarray(ring_theta(self.name, self.ring), _F32)

    def sample_trial(self, u, params):
        return {"ground_truth": u[0] * _TWO_PI}  # neurogym: rng.uniform(0, 2 pi)

    def forced_value(self, key, value, like):
        return jnp.asarray(value, _F32)

    def _sample_trial(self, u, params, num_tr, forced=None, durations=None) -> ReachState:
        s = super()._sample_trial(u, params, num_tr, forced, durations)
        return ReachState(t=s.t, ends=s.ends, num_tr=s.num_tr, trial=s.trial, stim=s.stim,
                          arm=jnp.asarray(np.pi, _F32), perf=jnp.zeros((), _F32))

    def _complete_trial(self, trial, params, steps):
        # state.stim = the target ring shown in `reach`
        return trial, jnp.cos(self._theta() - trial["ground_truth"]).astype(_F32)

    def _obs(self, p, state, noise):
        target = jnp.where(p == 1, state.stim, 0.0)
        arm = jnp.cos(self._theta() - state.arm)
        return jnp.concatenate([target, arm]).astype(_F32)

    def gt_now(self, state, params=None):
        # neurogym's int64 gt buffer: int(pi) in fixation, int(ground_truth) in reach
        in_reach = period_index(state) == 1
        return jnp.where(in_reach, jnp.trunc(state.trial["ground_truth"]).astype(_I32), 3).astype(_I32)

    def shortest_trial(self, params) -> int:
        return max(1, sum(int(pt.min_steps) for pt in params.timing))  # trials end only by timeout

    def step(self, key, state, action, params):
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        action = jnp.asarray(action, _I32)
        move = jnp.where(action == 1, _STEP, jnp.where(action == 2, -_STEP, np.float32(0)))
        arm = jnp.mod(state.arm + move, _TWO_PI)
        gt = self.gt_now(state, params)
        in_reach = period_index(state) == 1
        correct, fail = params.rewards["correct"], params.rewards["fail"]
        r = jnp.maximum(correct - circular_dist(arm - gt.astype(_F32)), fail)
        reward = jnp.where(in_reach, r, 0.0).astype(_F32)
        n_reach = jnp.maximum(state.ends[1] - state.ends[0], 1).astype(_F32)
        perf = state.perf + jnp.where(in_reach, (r - fail) / (correct - fail) / n_reach, 0.0)
        timeout = state.t + 1 >= state.ends[-1]
        moved = state.replace(arm=arm, perf=perf.astype(_F32))
        # _advance reports its last argument as info["performance"]: the trial's, on its last step
        return self._advance(u, z, moved, params, timeout, reward, gt, jnp.where(timeout, perf, 0.0))
