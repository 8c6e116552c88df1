"""Bandit-v0 (neurogym 2.3.1, envs/native/bandit.py): a multi-armed bandit of one-step trials.

Its own small class (gymnax style) rather than a `TrialTask`: a trial is a single step with no
periods, no timing and no fixation/decision rule, and its reward is drawn when the action is taken.

Every step is a whole trial: action a (one of n arms) gets reward rewards[a] with probability p[a]
(a fresh draw each time), and the step ends the trial. The observation is always [0.0] (neurogym's
ob is a zero array of shape (1, 1)); there is no noise. The arm probabilities are fixed for the
env's life (neurogym's `p`, default (0.5, 0.5)): nothing drifts across trials.
trial = {p: float32[n], rewards: float32[n]}; `new_trial(..., p=..., rewards=...)` forces them for
one trial, as neurogym's new_trial(**kwargs) does (the next trial is back to the env's values).

As neurogym reports it: `performance` is 0 on every trial (the task never sets it), and the task
builds no ground truth (its info has no "gt"; the port reports gt = 0). So the task table's random
and ceiling figures are 0 / none, and an agent's progress shows in the reward per trial only.
Neurogym's `timing` is accepted and ignored (neurogym only warns); `dt` has no effect but is kept.
Keyword arguments: dt, n, p, timing. Neurogym's `rewards` (a list of arm magnitudes, default all 1)
is not supported as a constructor argument, because make_jax_env takes `rewards` as a dict for every
task; force it per trial instead.

Differences from neurogym, on purpose (as for every port, see base.py): `reset` does not consume a
step; random streams differ (the laws are equal).
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from collector.tasks.base import _F32, _I32, _is_number, _take


@struct.dataclass
class BanditParams:
    dt: jax.Array  # float32, ms per step (no effect)
    p: jax.Array  # float32[n], probability that each arm pays
    rewards: jax.Array  # float32[n], what each arm pays
    sigma: jax.Array  # float32, always 0: no noise (the field generic code reads, as in base.EnvParams)


@struct.dataclass
class BanditState:
    t: jax.Array  # int32, always 0 (a trial is one step)
    ends: jax.Array  # int32[1] = [1], so that base.period_index and trial_length work
    num_tr: jax.Array  # int32, trials started since reset
    trial: dict  # {p: float32[n], rewards: float32[n]}


@dataclasses.dataclass(frozen=True)
class Bandit:
    n: int = 2

    name: ClassVar[str] = "Bandit-v0"
    periods: ClassVar[tuple[str, ...]] = ("trial",)
    default_timing: ClassVar[dict] = {}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "n", "p", "timing")
    trial_keys: ClassVar[tuple[str, ...]] = ("p", "rewards")
    obs_dim: ClassVar[int] = 1
    noise_dim: ClassVar[int] = 0

    @property
    def num_actions(self) -> int:
        return self.n

    @classmethod
    def make(cls, dt=100, n=2, p=(0.5, 0.5), timing=None):
        if not _is_number(dt) or dt <= 0:
            raise ValueError(f"{cls.name}: dt must be a positive number, got {dt!r}")
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{cls.name}: n must be a positive int, got {n!r}")
        if (not isinstance(p, list | tuple | np.ndarray) or len(p) != n
                or not all(_is_number(x) and 0 <= x <= 1 for x in p)):
            raise ValueError(f"{cls.name}: p must be {n} probabilities (one per arm), got {p!r}")
        env = cls(n=int(n))
        return env, BanditParams(dt=jnp.asarray(dt, _F32), p=jnp.asarray(p, _F32), rewards=jnp.ones((n,), _F32),
                                 sigma=jnp.zeros((), _F32))

    # --- trials ---------------------------------------------------------------------------------
    def new_trial(self, key, params: BanditParams, durations=None, num_tr=1, **forced) -> BanditState:
        """A state at the start of a trial; `forced` p / rewards (float[n]) as neurogym's new_trial."""
        for k in forced:
            if k not in self.trial_keys:
                raise ValueError(f"{self.name}: unknown trial parameter {k!r} (known: p, rewards)")
        if durations:
            raise ValueError(f"{self.name}: a trial is one step; it has no periods to set")
        trial = {"p": params.p, "rewards": params.rewards}
        trial.update({k: jnp.broadcast_to(jnp.asarray(v, _F32), (self.n,)) for k, v in forced.items()})
        return BanditState(t=jnp.zeros((), _I32), ends=jnp.ones((1,), _I32), num_tr=jnp.asarray(num_tr, _I32),
                           trial=trial)

    def reset(self, key, params: BanditParams):
        state = self.new_trial(key, params)
        return self.get_obs(state, params), state

    def get_obs(self, state, params, noise=None) -> jax.Array:
        return jnp.zeros((1,), _F32)

    def gt_now(self, state, params=None) -> jax.Array:
        return jnp.zeros((), _I32)  # neurogym's Bandit builds no ground truth

    def trial_length(self, state) -> jax.Array:
        return state.ends[-1]

    def shortest_trial(self, params) -> int:
        return 1

    def step(self, key, state: BanditState, action, params: BanditParams):
        """(obs[1], next state, reward, done=False, info): the arm pays with its probability; every
        step ends its trial."""
        action = jnp.asarray(action, _I32)
        pays = jax.random.uniform(key, (), _F32) < _take(state.trial["p"], action)
        reward = jnp.where(pays, _take(state.trial["rewards"], action), 0.0).astype(_F32)
        next_state = self.new_trial(key, params, num_tr=state.num_tr + 1)
        info = {"new_trial": jnp.ones((), bool), "gt": jnp.zeros((), _I32), "performance": jnp.zeros((), _F32),
                "trial_step": state.t, "trial_params": state.trial}
        return self.get_obs(next_state, params), next_state, reward, jnp.zeros((), bool), info
