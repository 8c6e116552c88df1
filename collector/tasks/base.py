"""The small declarative base of the pure-JAX NeuroGym ports (gymnax style: pure, jittable, vmappable).

A task is a frozen dataclass that subclasses `TrialTask` and states, as class attributes and two or
three short methods:

- `name`, `periods` (in trial order), `default_timing` (neurogym's timing specs, see timing.py),
  `default_rewards`, `default_dt` / `default_sigma` (the neurogym constructor's defaults);
- `kwargs`: the neurogym constructor keyword arguments the port accepts (anything else fails with
  one line naming it);
- `trial_keys` and `n_trial_u`: the trial parameters one may force (neurogym's names) and how many
  uniforms `sample_trial` needs to draw them;
- `obs_dim`, `num_actions`; `noise`: {period: channels} that get N(0, 1) * sigma / sqrt(dt) noise;
- `abort_period` (a non-zero action there costs `rewards["abort"]`, and ends the trial when
  `abort`), `decision_period` (the first non-zero action there ends the trial with
  `rewards["correct"]` if it equals the ground truth, else `rewards["fail"]`; None: no choice ends
  a trial) and `timeout_reward` (neurogym's `r_tmax`, added when a trial times out; None: nothing);
- `sample_trial(u, params) -> trial dict`, `observations(trial, params, steps) -> (trial,
  float32[P, D])` (the noise-free observation of each period: the "channels per period") and
  `gt_action(trial)` (the correct action in the decision period).

The base supplies the rest: period bookkeeping (the state holds the step index `t` within the trial
and the cumulative period ends; nothing per step is stored), timing sampling, noise, abort and
timeout handling, the `info` fields, `reset`, `step` and `new_trial` with forced parameters.
Tasks whose observations change within a period override `_obs` (and `_complete_trial`); tasks whose
rules do not fit override `step` or get their own class (see docs/porting.md).

API (all methods are pure functions of their arguments; jit and vmap them):
- `env.reset(key, params) -> (obs[D], state)`; `env.step(key, state, action, params) ->
  (obs, state, reward, done, info)`.
- `env.new_trial(key, params, durations=None, **forced) -> state` at step 0 of a trial, with trial
  parameters forced by neurogym's names (as `env.unwrapped.new_trial(**forced)`) and optionally
  period lengths in steps (`durations={"delay": 5}`); `env.get_obs(state, params, noise=None)`
  (noise-free when `noise` is None); `env.gt_now(state)`; `period_index(state)` (index into
  `env.periods`); `env.trial_length(state)`.
- Static shapes: `env.obs_dim`, `env.num_actions`, `env.noise_dim`, `env.periods`.
- `params` (EnvParams) and `state` (EnvState) are flax struct dataclasses (pytrees).

Semantics follow `neurogym.core.TrialEnv.step` (each port's test checks them against the real
neurogym):

- A trial is a sequence of periods laid end to end; each period lasts floor(duration_ms / dt)
  steps (durations sampled per trial). The observation of the current step is computed from the
  state on the fly.
- Noise is iid N(0, 1) * sigma / sqrt(dt) per step on the task's noisy channels, drawn with the
  step key: it matches neurogym in distribution, not in RNG stream.
- `info["new_trial"]` is True on the step that ends a trial; that step then samples the next trial
  and returns the observation of its step 0. `done` is always False: NeuroGym tasks never end, and
  cutting the stream into RL episodes is the caller's job.
- `info["gt"]` is the ground truth of the observation that was acted on (neurogym's `info["gt"]`);
  `info["performance"]` is 1.0 when the action ended the trial with a correct choice, else 0.0
  (meaningful on new-trial steps; neurogym zeroes `performance` after every `new_trial`, so a
  trial that times out always reports 0); `info["trial_step"]` is the index within its trial of the
  step acted on, and `info["trial_params"]` holds the parameters of the trial the action belonged
  to. Note: neurogym's `info["trial"]` is the NEXT trial's parameters; ours are the acted-on trial's.

Differences from neurogym, on purpose:
- `reset(key, params)` starts the first trial at its step 0 and returns that observation. Neurogym's
  `reset()` samples the first trial and silently consumes its step 0 with `action_space.sample()`,
  returning the obs of step 1. Here nothing is consumed, so the first trial is an ordinary trial.
- Random streams differ (JAX threefry keys instead of numpy RandomState); distributions are equal.
- Truncated-exponential and uniform durations are sampled by inverse CDF in float32 and floored to
  dt (exact law up to float32 rounding at step boundaries); lists/choices use exact tables.
- Unused reward keys and unknown timing periods, which neurogym silently ignores, are rejected with
  ValueError.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from collector.tasks.timing import (  # noqa: F401  (re-exported for the task modules)
    PeriodTiming,
    _BIG_STEPS,
    _is_number,
    _parse_timing,
    _sample_steps,
    _steps,
    _take,
)

_F32 = jnp.float32
_I32 = jnp.int32


# --------------------------------------------------------------------------------------------
# Pytrees
# --------------------------------------------------------------------------------------------
@struct.dataclass
class EnvParams:
    """Task constants (leaves may be changed with `.replace` without recompiling when shapes
    and timing kinds are unchanged)."""

    dt: jax.Array  # float32, ms per step
    sigma: jax.Array  # float32, neurogym's `sigma`; the per-step noise std is sigma / sqrt(dt)
    timing: tuple  # tuple[PeriodTiming, ...], one per period in env.periods order
    rewards: dict  # reward name -> float32 ("fail" is 0 when the task has none)
    abort: jax.Array  # bool: a fixation break ends the trial
    cohs: jax.Array  # float32[n] coherences (PDM, CDM; empty for others)
    contexts: jax.Array  # int32[n] contexts to draw from (CDM; [0] for others)
    extra: dict = struct.field(default_factory=dict)  # task-specific constants (arrays)


@struct.dataclass
class EnvState:
    """State of one env: the current trial and the step within it."""

    t: jax.Array  # int32, index of the current step within the trial
    ends: jax.Array  # int32[P], cumulative end step of each period; trial length = ends[-1]
    num_tr: jax.Array  # int32, trials started since reset (1 during the first)
    trial: dict  # trial parameters, as neurogym's trial dict (ground_truth, coh, ...)
    stim: jax.Array  # float32[S], noise-free stimulus values of this trial (task layout)


def period_index(state: EnvState) -> jax.Array:
    """Index (in env.periods) of the period the current step belongs to."""
    return jnp.sum(state.t >= state.ends).astype(_I32)


# --------------------------------------------------------------------------------------------
# Helpers for the task modules
# --------------------------------------------------------------------------------------------
def _pick(u: jax.Array, options: jax.Array) -> jax.Array:
    """Uniform choice among options with one uniform u in [0, 1)."""
    n = options.shape[0]
    idx = jnp.minimum((u * n).astype(_I32), n - 1)
    return _take(options, idx)


def _uniforms_and_normals(key: jax.Array, n_u: int, n_z: int):
    """n_u U[0,1) and n_z N(0,1) draws from a single threefry call (the normals as jax.random.normal
    makes them: sqrt(2) * erfinv(U(-1, 1)))."""
    u = jax.random.uniform(key, (n_u + n_z,), _F32)
    v = jnp.maximum(2.0 * u[n_u:] - 1.0, np.nextafter(np.float32(-1), np.float32(1)))
    return u[:n_u], np.float32(np.sqrt(2)) * jax.lax.erf_inv(v)


def check_dim_ring(task: str, kw: dict) -> int:
    """Pop and validate neurogym's `dim_ring` (default 2) from kw."""
    dim_ring = kw.pop("dim_ring", 2)
    if not isinstance(dim_ring, numbers.Integral) or dim_ring < 1:
        raise ValueError(f"{task}: dim_ring must be a positive int, got {dim_ring!r}")
    return int(dim_ring)


def check_numbers(task: str, name: str, values, *, nested: bool = False) -> list:
    """A non-empty list of numbers (or of equal-length tuples of numbers when nested), else
    ValueError naming the keyword argument."""
    vals = list(values) if isinstance(values, list | tuple | np.ndarray) else None
    ok = bool(vals)
    if ok and nested:
        ok = all(isinstance(v, list | tuple | np.ndarray) and len(v) == len(vals[0]) > 0
                 and all(_is_number(x) for x in v) for v in vals)
    elif ok:
        ok = all(_is_number(v) for v in vals)
    if not ok:
        what = "a non-empty list of equal-length tuples of numbers" if nested else "a non-empty list of numbers"
        raise ValueError(f"{task}: {name} must be {what}, got {values!r}")
    return vals


# --------------------------------------------------------------------------------------------
# The base
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TrialTask:
    """Shared trial bookkeeping, step/reset logic and construction; subclasses declare the task
    (see the module docstring and docs/porting.md)."""

    name: ClassVar[str]
    periods: ClassVar[tuple[str, ...]]
    default_timing: ClassVar[dict[str, Any]]
    default_rewards: ClassVar[dict[str, float]]
    default_dt: ClassVar[float] = 100
    default_sigma: ClassVar[float] = 1.0
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth",)
    n_trial_u: ClassVar[int] = 1  # uniforms needed to sample the trial variables (not durations)
    abort_period: ClassVar[str | None] = "fixation"
    decision_period: ClassVar[str | None] = "decision"
    # period -> tuple of noisy channels, or "all" (may be a property, e.g. for a ring of dim_ring
    # channels); tasks that override _obs use it only to say that they are noisy
    noise: ClassVar[dict[str, Any]] = {}
    has_timeout_reward: ClassVar[bool] = False  # True: timeout_reward(trial, params) on timeouts

    # --- static shapes --------------------------------------------------------------------
    @property
    def num_actions(self) -> int:
        raise NotImplementedError

    @property
    def obs_dim(self) -> int:
        raise NotImplementedError

    @property
    def noise_dim(self) -> int:
        """Normals drawn per step (the declarative observation uses one per channel)."""
        return self.obs_dim if self.noise else 0

    # --- task hooks (declarative tasks implement these three) -------------------------------
    def sample_trial(self, u: jax.Array, params: EnvParams) -> dict:
        """Trial variables from n_trial_u uniforms: {name: scalar array}."""
        raise NotImplementedError

    def observations(self, trial: dict, params: EnvParams, steps: jax.Array) -> tuple[dict, jax.Array]:
        """(trial with derived entries, float32[P, obs_dim] noise-free observation of each period);
        steps: int32[P] this trial's period lengths."""
        raise NotImplementedError

    def gt_action(self, trial: dict) -> jax.Array:
        """Correct action in the decision period."""
        return trial["ground_truth"].astype(_I32)

    def timeout_reward(self, trial: dict, params: EnvParams) -> jax.Array:
        """neurogym's r_tmax: reward added on the step where a trial times out (has_timeout_reward)."""
        raise NotImplementedError

    def noise_std(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Std of the observation noise this step: neurogym's sigma / sqrt(dt) (a task whose trial
        sets its own noise level overrides this)."""
        return params.sigma / jnp.sqrt(params.dt)

    def forced_value(self, key: str, value, like: jax.Array) -> jax.Array:
        """A forced trial parameter (neurogym's value) as this port stores it."""
        return jnp.asarray(value, like.dtype)

    def params_extra(self, kw: dict) -> dict:
        """Task-specific constructor arguments (popped from kw) -> EnvParams.extra arrays."""
        return {}

    # --- the declarative default: one noise-free observation row per period -------------------
    def _complete_trial(self, trial: dict, params: EnvParams, steps: jax.Array) -> tuple[dict, jax.Array]:
        """Derived trial entries and the noise-free stimulus vector (state.stim)."""
        trial, table = self.observations(trial, params, steps)
        return trial, jnp.asarray(table, _F32).reshape(-1)

    def _noise_mask(self) -> np.ndarray:
        mask = np.zeros((len(self.periods), self.obs_dim), np.float32)
        for period, chans in self.noise.items():
            mask[self.periods.index(period), slice(None) if chans == "all" else list(chans)] = 1.0
        return mask

    def _obs(self, p: jax.Array, state: EnvState, noise: jax.Array) -> jax.Array:
        n_p, d = len(self.periods), self.obs_dim
        hit = (jnp.arange(n_p, dtype=_I32) == p)[:, None]
        table = state.stim.reshape(n_p, d)
        clean = jnp.sum(jnp.where(hit, table, 0.0), axis=0)
        if not self.noise:
            return clean.astype(_F32)
        # one scalar "in one of these periods" flag per distinct channel pattern (usually one),
        # times a constant channel mask: about 2x faster once vmapped than selecting a [P, D] mask row
        mask = self._noise_mask()
        for row in np.unique(mask[mask.any(axis=1)], axis=0):
            periods = [i for i in range(n_p) if np.array_equal(mask[i], row)]
            flag = functools.reduce(jnp.logical_or, [p == i for i in periods])
            clean = clean + jnp.where(flag, noise * jnp.asarray(row), 0.0)
        return clean.astype(_F32)

    # --- bookkeeping ------------------------------------------------------------------------
    def _period_is(self, p: jax.Array, period: str | None) -> jax.Array:
        if period is None:
            return jnp.zeros((), bool)
        return p == self.periods.index(period)

    def _sample_trial(self, u: jax.Array, params: EnvParams, num_tr, forced=None,
                      durations=None) -> EnvState:
        trial = self.sample_trial(u[: self.n_trial_u], params)
        for k, v in (forced or {}).items():
            trial[k] = self.forced_value(k, v, trial[k])
        steps = []
        for i, (name, pt) in enumerate(zip(self.periods, params.timing)):
            if durations is not None and name in durations:
                steps.append(jnp.asarray(durations[name], _I32))
            else:
                steps.append(_sample_steps(pt, u[self.n_trial_u + i], params.dt))
        steps = jnp.stack(steps)
        trial, stim = self._complete_trial(trial, params, steps)
        ends = jnp.cumsum(steps).astype(_I32)
        return EnvState(t=jnp.zeros((), _I32), ends=ends, num_tr=jnp.asarray(num_tr, _I32),
                        trial=trial, stim=stim)

    @property
    def _n_u(self) -> int:
        return self.n_trial_u + len(self.periods)

    # --- public API ---------------------------------------------------------------------------
    def new_trial(self, key: jax.Array, params: EnvParams, durations: dict | None = None,
                  num_tr=1, **forced) -> EnvState:
        """A state at step 0 of a freshly sampled trial. `forced` fixes trial parameters by
        neurogym's names (like `env.unwrapped.new_trial(**forced)`), `durations` fixes periods'
        numbers of steps ({period: steps})."""
        for k in forced:
            if k not in self.trial_keys:
                raise ValueError(f"{self.name}: unknown trial parameter {k!r} "
                                 f"(known: {', '.join(self.trial_keys) or 'none'})")
        for k in durations or {}:
            if k not in self.periods:
                raise ValueError(f"{self.name}: unknown period {k!r}")
        u = jax.random.uniform(key, (self._n_u,), _F32)
        return self._sample_trial(u, params, num_tr, forced, durations)

    def get_obs(self, state: EnvState, params: EnvParams, noise: jax.Array | None = None) -> jax.Array:
        """Observation of the current step; `noise` is N(0,1)[noise_dim] (None: noise-free)."""
        if noise is None:
            noise = jnp.zeros((self.noise_dim,), _F32)
        noise = noise * self.noise_std(state, params)
        return self._obs(period_index(state), state, noise.astype(_F32))

    def gt_now(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        """Ground truth of the current step (neurogym's env.gt_now): the correct action in the
        decision period, 0 elsewhere."""
        in_dec = self._period_is(period_index(state), self.decision_period)
        return jnp.where(in_dec, self.gt_action(state.trial), 0).astype(_I32)

    def trial_length(self, state: EnvState) -> jax.Array:
        return state.ends[-1]

    def shortest_trial(self, params: EnvParams) -> int:
        """A lower bound on a trial's steps (Python int, for sizing buffers): every period at its
        shortest, except that the first response in the decision period ends the trial, and with
        abort a fixation break ends it at once."""
        if bool(params.abort) and self.abort_period is not None:
            return 1
        mins = [int(pt.min_steps) for pt in params.timing]
        full = sum(mins)
        if self.decision_period is not None:
            full = min(full, sum(mins[: self.periods.index(self.decision_period)]) + 1)
        return max(1, full)

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        state = self._sample_trial(u, params, 1)
        return self.get_obs(state, params, z), state

    def step(self, key: jax.Array, state: EnvState, action, params: EnvParams):
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        action = jnp.asarray(action, _I32)
        p = period_index(state)
        in_fix = self._period_is(p, self.abort_period)
        in_dec = self._period_is(p, self.decision_period)
        gt = self.gt_now(state, params)
        moved = action != 0
        correct = in_dec & moved & (action == gt)
        reward = (jnp.where(in_fix & moved, params.rewards["abort"], 0.0)
                  + jnp.where(in_dec & moved,
                              jnp.where(correct, params.rewards["correct"], params.rewards["fail"]),
                              0.0)).astype(_F32)
        ended = (in_fix & moved & params.abort) | (in_dec & moved)
        timeout = state.t + 1 >= state.ends[-1]
        if self.has_timeout_reward:  # neurogym adds r_tmax only when nothing else ended the trial
            reward = reward + jnp.where(timeout & ~ended, self.timeout_reward(state.trial, params), 0.0).astype(_F32)
        return self._advance(u, z, state, params, ended | timeout, reward, gt, correct)

    def _advance(self, u, z, state: EnvState, params: EnvParams, new_trial, reward, gt, correct):
        """The end of `step`: next state (a fresh trial where new_trial), its obs and the info."""
        fresh = self._sample_trial(u, params, state.num_tr + 1)
        cont = state.replace(t=state.t + 1)
        next_state = jax.tree.map(lambda a, b: jnp.where(new_trial, a, b), fresh, cont)
        obs = self.get_obs(next_state, params, z)
        info = {
            "new_trial": new_trial,
            "gt": gt,
            "performance": correct.astype(_F32),
            "trial_step": state.t,
            "trial_params": state.trial,
        }
        return obs, next_state, reward, jnp.zeros((), bool), info

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def make(cls, **kw) -> tuple[TrialTask, EnvParams]:
        """(env, params) from neurogym constructor kwargs (already checked against cls.kwargs)."""
        env = cls()
        extra = env.params_extra(kw)
        return env, env._make_params(extra=extra, **kw)

    def _make_params(self, dt=None, sigma=None, timing=None, rewards=None, abort=False,
                     cohs=None, contexts=(0,), extra=None) -> EnvParams:
        dt = self.default_dt if dt is None else dt
        sigma = (self.default_sigma if self.noise else 0.0) if sigma is None else sigma
        if not _is_number(dt) or dt <= 0:
            raise ValueError(f"{self.name}: dt must be a positive number, got {dt!r}")
        if not _is_number(sigma) or sigma < 0:
            raise ValueError(f"{self.name}: sigma must be a number >= 0, got {sigma!r}")
        spec = dict(self.default_timing)
        for k, v in (timing or {}).items():
            if k not in self.periods:
                raise ValueError(f"{self.name}: unknown timing period {k!r} "
                                 f"(periods: {', '.join(self.periods)})")
            spec[k] = v
        tim = tuple(_parse_timing(k, spec[k], float(dt)) for k in self.periods)
        rw = dict(self.default_rewards)
        for k, v in (rewards or {}).items():
            if k not in rw:
                raise ValueError(f"{self.name}: unsupported reward key {k!r} "
                                 f"(this task uses: {', '.join(rw)})")
            if not _is_number(v):
                raise ValueError(f"{self.name}: reward {k!r} must be a number, got {v!r}")
            rw[k] = v
        rw.setdefault("fail", 0.0)
        rw.setdefault("abort", 0.0)
        rw.setdefault("correct", 0.0)
        return EnvParams(
            dt=jnp.asarray(dt, _F32),
            sigma=jnp.asarray(sigma, _F32),
            timing=tim,
            rewards={k: jnp.asarray(v, _F32) for k, v in rw.items()},
            abort=jnp.asarray(bool(abort)),
            cohs=jnp.asarray([] if cohs is None else cohs, _F32),
            contexts=jnp.asarray(contexts, _I32),
            extra={k: jnp.asarray(v) for k, v in (extra or {}).items()},
        )

    def _theta(self) -> np.ndarray:
        return np.linspace(0, 2 * np.pi, self.dim_ring + 1)[:-1]


_JaxTrialEnv = TrialTask  # the name the three first ports were written against
