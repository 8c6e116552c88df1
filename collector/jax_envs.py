"""Pure-JAX ports of three NeuroGym 2.3.1 tasks (gymnax style: pure, jittable, vmappable).

    env, params = make_jax_env("PerceptualDecisionMaking-v0", sigma=1.0, timing={"stimulus": 1000})
    obs, state = env.reset(key, params)
    obs, state, reward, done, info = env.step(key, state, action, params)

Supported ids: `JAX_TASKS` = PerceptualDecisionMaking-v0, DelayMatchSample-v0 and
ContextDecisionMaking-v0 (implicit context by default; `use_expl_context=True` is supported too).
Keyword arguments are the ones the neurogym constructors take, with the same names and meaning
(`dt`, `sigma`, `timing`, `rewards`, `abort`, `dim_ring`, `cohs`, `use_expl_context`,
`impl_context_modality`); `timing` values may be anything those constructors accept for these
tasks: a number of ms, a list/tuple of numbers (uniform choice), `("constant", v)`,
`("choice", [...])`, `("uniform", (lo, hi))`, `("truncated_exponential", (mean, vmin, vmax))` or an
`ngym_random.TruncExp` instance. Unknown task ids, unknown keyword arguments, periods, reward keys
and unsupported timing specs (`"until"`, arbitrary callables) raise ValueError naming them.

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

Semantics follow `neurogym.core.TrialEnv.step` exactly (see tests/test_jax_envs.py, which checks
them against the real neurogym):

- A trial is a sequence of periods laid end to end; each period lasts floor(duration_ms / dt)
  steps (durations sampled per trial). The state holds the step index `t` within the trial and the
  cumulative period ends, and the observation of the current step is computed from the state on the
  fly (no per-trial arrays).
- Noise: iid N(0, 1) * sigma / sqrt(dt) per step and stimulus channel, only in the stimulus
  period(s) (PDM, CDM: `stimulus`; DMS: `sample` and `test`). It is drawn with the step key, so it
  matches neurogym in distribution, not in RNG stream.
- Rewards: a non-zero action in the fixation period costs `rewards["abort"]` and ends the trial only
  if `abort=True`; in the decision period the first non-zero action ends the trial with
  `rewards["correct"]` if it equals the ground truth, else `rewards["fail"]` (0 in CDM, which has no
  fail reward); actions in the other periods are ignored; a trial whose last step passes without a
  choice ends with reward 0 (timeout).
- `info["new_trial"]` is True on the step that ends a trial; that step then samples the next trial
  and returns the observation of its step 0. `done` is always False: NeuroGym tasks never end, and
  cutting the stream into RL episodes is the caller's job.
- `info["gt"]` is the ground truth of the observation that was acted on (neurogym's
  `info["gt"]`: the correct action in the decision period, 0 elsewhere); `info["performance"]` is 1.0
  when the action ended the trial with a correct choice, else 0.0 (meaningful on new-trial steps);
  `info["trial_step"]` is the index within its trial of the step acted on (so a trial took
  `trial_step + 1` steps when `new_trial`), and `info["trial_params"]` holds the parameters of the
  trial the action belonged to (ground truth, coherence(s), ...) for psychometric analyses.
  Note: neurogym's `info["trial"]` is the NEXT trial's parameters; ours are the acted-on trial's.

Differences from neurogym, on purpose:
- `reset(key, params)` starts the first trial at its step 0 and returns that observation. Neurogym's
  `reset()` samples the first trial and silently consumes its step 0 with `action_space.sample()`
  (after `action_space.seed(0)`, so that action is the same in every env), returning the obs of
  step 1. Here nothing is consumed, so the first trial is an ordinary trial.
- Random streams differ (JAX threefry keys instead of numpy RandomState); distributions are equal.
- Truncated-exponential and uniform durations are sampled by inverse CDF in float32 and floored to
  dt (exact law up to float32 rounding at step boundaries); lists/choices use exact tables.
- Unused reward keys (e.g. `fail` for ContextDecisionMaking) and unknown timing periods, which
  neurogym silently ignores, are rejected with ValueError.
- `r_tmax` (not a constructor argument of these tasks) is not supported: timeouts give 0.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = [
    "JAX_TASKS",
    "EnvParams",
    "EnvState",
    "PeriodTiming",
    "make_jax_env",
    "period_index",
]

JAX_TASKS = (
    "PerceptualDecisionMaking-v0",
    "DelayMatchSample-v0",
    "ContextDecisionMaking-v0",
)

_F32 = jnp.float32
_I32 = jnp.int32
_BIG_STEPS = 2**30


# --------------------------------------------------------------------------------------------
# Pytrees
# --------------------------------------------------------------------------------------------
@struct.dataclass
class PeriodTiming:
    """How the number of steps of one period is drawn each trial.

    kind (static): "constant" (values[0]), "table" (values[i] with cumulative probabilities cdf),
    "uniform" (floor((lo + u * width) / dt)) or "trunc_exp" (floor(x / dt) with x exponential of
    `mean`, truncated to [lo, lo + width): x = lo - mean * log1p(-u * mass)). Steps are clipped to
    [min_steps, max_steps], the support of the exact law; for every kind, min_steps and
    max_steps bound the period's possible lengths (max_steps = 2**30 when unbounded).
    """

    kind: str = struct.field(pytree_node=False)
    values: jax.Array  # int32[K]
    cdf: jax.Array  # float32[K]
    lo: jax.Array  # float32, ms
    width: jax.Array  # float32, ms
    mean: jax.Array  # float32, ms
    mass: jax.Array  # float32, 1 - exp(-width / mean)
    min_steps: jax.Array  # int32
    max_steps: jax.Array  # int32


@struct.dataclass
class EnvParams:
    """Task constants (leaves may be changed with `.replace` without recompiling when shapes
    and timing kinds are unchanged)."""

    dt: jax.Array  # float32, ms per step
    sigma: jax.Array  # float32, neurogym's `sigma`; the per-step noise std is sigma / sqrt(dt)
    timing: tuple  # tuple[PeriodTiming, ...], one per period in env.periods order
    rewards: dict  # {"abort", "correct", "fail"} -> float32 ("fail" is 0 for CDM)
    abort: jax.Array  # bool: a fixation break ends the trial
    cohs: jax.Array  # float32[n] coherences (PDM, CDM; empty for DMS)
    contexts: jax.Array  # int32[n] contexts to draw from (CDM; [0] for others)


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
# Timing parsing (Python side, at make time)
# --------------------------------------------------------------------------------------------
def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _steps(ms: float, dt: float) -> int:
    # neurogym: (t // dt) * dt, then start/end indices int(t / dt)
    return int(round(((ms // dt) * dt) / dt))


def _timing(kind, *, values=(0,), probs=None, lo=0.0, width=0.0, mean=1.0, mass=0.0,
            min_steps=0, max_steps=_BIG_STEPS) -> PeriodTiming:
    values = np.asarray(values, np.int32)
    if kind in ("constant", "table"):
        min_steps, max_steps = int(values.min()), int(values.max())
    cdf = np.cumsum(probs if probs is not None else np.ones(len(values)) / len(values))
    cdf[-1] = 1.0
    return PeriodTiming(
        kind=kind,
        values=jnp.asarray(values, _I32),
        cdf=jnp.asarray(cdf, _F32),
        lo=jnp.asarray(lo, _F32),
        width=jnp.asarray(width, _F32),
        mean=jnp.asarray(mean, _F32),
        mass=jnp.asarray(mass, _F32),
        min_steps=jnp.asarray(min_steps, _I32),
        max_steps=jnp.asarray(min(max_steps, _BIG_STEPS), _I32),
    )


def _choice_timing(vals, dt, where) -> PeriodTiming:
    vals = list(vals)
    if not vals or not all(_is_number(v) for v in vals):
        raise ValueError(f"timing[{where!r}]: a choice needs a non-empty list of numbers, got {vals!r}")
    steps = [_steps(float(v), dt) for v in vals]
    uniq, counts = np.unique(steps, return_counts=True)
    if len(uniq) == 1:
        return _timing("constant", values=uniq)
    return _timing("table", values=uniq, probs=counts / counts.sum())


def _trunc_exp_timing(vmean, vmin=0.0, vmax=math.inf, *, dt, where) -> PeriodTiming:
    vmean, vmin, vmax = float(vmean), float(vmin), float(vmax)
    if vmin >= vmax:  # neurogym returns vmax
        return _timing("constant", values=[_steps(vmax, dt)])
    if vmean <= 0:
        raise ValueError(f"timing[{where!r}]: truncated exponential mean must be > 0, got {vmean}")
    width = vmax - vmin
    mass = -math.expm1(-width / vmean) if math.isfinite(width) else 1.0
    max_steps = math.ceil(vmax / dt) - 1 if math.isfinite(vmax) else _BIG_STEPS
    return _timing("trunc_exp", lo=vmin, width=width if math.isfinite(width) else 0.0, mean=vmean,
                   mass=mass, min_steps=_steps(vmin, dt), max_steps=max_steps)


def _parse_timing(where: str, spec: Any, dt: float) -> PeriodTiming:
    """One period's timing spec, as neurogym's TrialEnv.sample_time accepts it."""
    if _is_number(spec):
        if spec < 0:
            raise ValueError(f"timing[{where!r}]: negative duration {spec}")
        return _timing("constant", values=[_steps(float(spec), dt)])
    if callable(spec):
        if all(hasattr(spec, a) for a in ("vmean", "vmin", "vmax")):  # ngym_random.TruncExp
            return _trunc_exp_timing(spec.vmean, spec.vmin, spec.vmax, dt=dt, where=where)
        raise ValueError(f"timing[{where!r}]: unsupported callable {spec!r} (only TruncExp)")
    if isinstance(spec, list | tuple | np.ndarray) and len(spec) > 0:
        if _is_number(spec[0]):
            return _choice_timing(spec, dt, where)
        if len(spec) == 2 and isinstance(spec[0], str):
            dist, args = spec
            if dist == "constant":
                return _parse_timing(where, args, dt)
            if dist == "choice":
                return _choice_timing(args, dt, where)
            if dist == "uniform":
                lo, hi = (float(a) for a in args)
                if not hi > lo:
                    return _timing("constant", values=[_steps(lo, dt)])
                return _timing("uniform", lo=lo, width=hi - lo, min_steps=_steps(lo, dt),
                               max_steps=math.ceil(hi / dt) - 1)
            if dist == "truncated_exponential":
                return _trunc_exp_timing(*args, dt=dt, where=where)
            raise ValueError(f"timing[{where!r}]: unsupported distribution {dist!r}")
    raise ValueError(f"timing[{where!r}]: unsupported timing spec {spec!r}")


def _sample_steps(pt: PeriodTiming, u: jax.Array, dt: jax.Array) -> jax.Array:
    if pt.kind == "constant":
        return pt.values[0]
    if pt.kind == "table":
        return _take(pt.values, jnp.sum(u >= pt.cdf[:-1]).astype(_I32))
    if pt.kind == "uniform":
        x = pt.lo + u * pt.width
    else:  # trunc_exp
        x = pt.lo - pt.mean * jnp.log1p(-u * pt.mass)
    return jnp.clip(jnp.floor(x / dt).astype(_I32), pt.min_steps, pt.max_steps)


def _pick(u: jax.Array, options: jax.Array) -> jax.Array:
    """Uniform choice among options with one uniform u in [0, 1)."""
    n = options.shape[0]
    idx = jnp.minimum((u * n).astype(_I32), n - 1)
    return _take(options, idx)


def _take(options: jax.Array, idx: jax.Array) -> jax.Array:
    """options[idx] for a short static-length vector, as a one-hot sum (faster than a gather
    once vmapped on CPU)."""
    hit = jnp.arange(options.shape[0], dtype=_I32) == idx
    return jnp.sum(jnp.where(hit, options, jnp.zeros((), options.dtype)))


def _uniforms_and_normals(key: jax.Array, n_u: int, n_z: int):
    """n_u U[0,1) and n_z N(0,1) draws from a single threefry call (the normals as jax.random.normal
    makes them: sqrt(2) * erfinv(U(-1, 1)))."""
    u = jax.random.uniform(key, (n_u + n_z,), _F32)
    v = jnp.maximum(2.0 * u[n_u:] - 1.0, np.nextafter(np.float32(-1), np.float32(1)))
    return u[:n_u], np.float32(np.sqrt(2)) * jax.lax.erf_inv(v)


# --------------------------------------------------------------------------------------------
# Envs
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _JaxTrialEnv:
    """Shared step/reset logic; subclasses define periods, trial sampling and observations."""

    dim_ring: int = 2

    name: ClassVar[str]
    periods: ClassVar[tuple[str, ...]]
    default_timing: ClassVar[dict[str, Any]]
    default_rewards: ClassVar[dict[str, float]]
    trial_keys: ClassVar[tuple[str, ...]]
    n_trial_u: ClassVar[int]  # uniforms needed to sample the trial variables (not durations)

    # --- static shapes --------------------------------------------------------------------
    @property
    def num_actions(self) -> int:
        return 1 + self.dim_ring

    @property
    def obs_dim(self) -> int:
        raise NotImplementedError

    @property
    def noise_dim(self) -> int:
        return self.dim_ring

    # --- task hooks ---------------------------------------------------------------------------
    def _sample_trial_vars(self, u: jax.Array, params: EnvParams) -> dict:
        raise NotImplementedError

    def _complete_trial(self, trial: dict, params: EnvParams) -> tuple[dict, jax.Array]:
        """Derived trial entries and the noise-free stimulus vector."""
        raise NotImplementedError

    def _obs(self, p: jax.Array, state: EnvState, noise: jax.Array) -> jax.Array:
        raise NotImplementedError

    def gt_action(self, trial: dict) -> jax.Array:
        """Correct action in the decision period."""
        return trial["ground_truth"].astype(_I32)

    # --- public API ---------------------------------------------------------------------------
    def _sample_trial(self, u: jax.Array, params: EnvParams, num_tr, forced=None,
                      durations=None) -> EnvState:
        trial = self._sample_trial_vars(u[: self.n_trial_u], params)
        for k, v in (forced or {}).items():
            trial[k] = jnp.asarray(v, trial[k].dtype)
        trial, stim = self._complete_trial(trial, params)
        steps = []
        for i, (name, pt) in enumerate(zip(self.periods, params.timing)):
            if durations is not None and name in durations:
                steps.append(jnp.asarray(durations[name], _I32))
            else:
                steps.append(_sample_steps(pt, u[self.n_trial_u + i], params.dt))
        ends = jnp.cumsum(jnp.stack(steps)).astype(_I32)
        return EnvState(t=jnp.zeros((), _I32), ends=ends, num_tr=jnp.asarray(num_tr, _I32),
                        trial=trial, stim=stim)

    @property
    def _n_u(self) -> int:
        return self.n_trial_u + len(self.periods)

    def new_trial(self, key: jax.Array, params: EnvParams, durations: dict | None = None,
                  num_tr=1, **forced) -> EnvState:
        """A state at step 0 of a freshly sampled trial. `forced` fixes trial parameters by
        neurogym's names (like `env.unwrapped.new_trial(**forced)`), `durations` fixes periods'
        numbers of steps ({period: steps})."""
        for k in forced:
            if k not in self.trial_keys:
                raise ValueError(f"{self.name}: unknown trial parameter {k!r} "
                                 f"(known: {', '.join(self.trial_keys)})")
        for k in durations or {}:
            if k not in self.periods:
                raise ValueError(f"{self.name}: unknown period {k!r}")
        u = jax.random.uniform(key, (self._n_u,), _F32)
        return self._sample_trial(u, params, num_tr, forced, durations)

    def get_obs(self, state: EnvState, params: EnvParams, noise: jax.Array | None = None) -> jax.Array:
        """Observation of the current step; `noise` is N(0,1)[noise_dim] (None: noise-free)."""
        if noise is None:
            noise = jnp.zeros((self.noise_dim,), _F32)
        noise = noise * (params.sigma / jnp.sqrt(params.dt))
        return self._obs(period_index(state), state, noise.astype(_F32))

    def gt_now(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        """Ground truth of the current step (neurogym's env.gt_now)."""
        in_dec = period_index(state) == len(self.periods) - 1
        return jnp.where(in_dec, self.gt_action(state.trial), 0).astype(_I32)

    def trial_length(self, state: EnvState) -> jax.Array:
        return state.ends[-1]

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        state = self._sample_trial(u, params, 1)
        return self.get_obs(state, params, z), state

    def step(self, key: jax.Array, state: EnvState, action, params: EnvParams):
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        action = jnp.asarray(action, _I32)
        p = period_index(state)
        in_fix = p == 0
        in_dec = p == len(self.periods) - 1
        gt = jnp.where(in_dec, self.gt_action(state.trial), 0).astype(_I32)
        moved = action != 0
        correct = in_dec & moved & (action == gt)
        reward = (jnp.where(in_fix & moved, params.rewards["abort"], 0.0)
                  + jnp.where(in_dec & moved,
                              jnp.where(correct, params.rewards["correct"], params.rewards["fail"]),
                              0.0)).astype(_F32)
        new_trial = (in_fix & moved & params.abort) | (in_dec & moved) | (state.t + 1 >= state.ends[-1])
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
    def _make_params(self, dt=100, sigma=1.0, timing=None, rewards=None, abort=False,
                     cohs=None, contexts=(0,)) -> EnvParams:
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
        return EnvParams(
            dt=jnp.asarray(dt, _F32),
            sigma=jnp.asarray(sigma, _F32),
            timing=tim,
            rewards={k: jnp.asarray(v, _F32) for k, v in rw.items()},
            abort=jnp.asarray(bool(abort)),
            cohs=jnp.asarray([] if cohs is None else cohs, _F32),
            contexts=jnp.asarray(contexts, _I32),
        )

    def _theta(self) -> np.ndarray:
        return np.linspace(0, 2 * np.pi, self.dim_ring + 1)[:-1]


@dataclasses.dataclass(frozen=True)
class PerceptualDecisionMaking(_JaxTrialEnv):
    """obs = [fixation, stim_1..stim_R]; trial = {ground_truth in 0..R-1, coh};
    correct action = ground_truth + 1."""

    name: ClassVar[str] = "PerceptualDecisionMaking-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus", "delay", "decision")
    default_timing: ClassVar[dict] = {"fixation": 100, "stimulus": 2000, "delay": 0, "decision": 100}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "coh")
    n_trial_u: ClassVar[int] = 2

    @property
    def obs_dim(self) -> int:
        return 1 + self.dim_ring

    def _sample_trial_vars(self, u, params):
        return {"ground_truth": _pick(u[0], jnp.arange(self.dim_ring, dtype=_I32)),
                "coh": _pick(u[1], params.cohs)}

    def _complete_trial(self, trial, params):
        theta = jnp.asarray(self._theta(), _F32)
        stim = jnp.cos(theta - _take(theta, trial["ground_truth"])) * (trial["coh"] / 200) + 0.5
        return trial, stim.astype(_F32)

    def gt_action(self, trial):
        return trial["ground_truth"].astype(_I32) + 1

    def _obs(self, p, state, noise):
        fix = (p == 0).astype(_F32)
        stim = jnp.where(p == 1, state.stim + noise, 0.0)
        return jnp.concatenate([fix[None], stim]).astype(_F32)


@dataclasses.dataclass(frozen=True)
class DelayMatchSample(_JaxTrialEnv):
    """obs = [fixation, stim_1..stim_R]; trial = {ground_truth in {1 (match), 2 (non-match)},
    sample_theta, test_theta}; correct action = ground_truth."""

    name: ClassVar[str] = "DelayMatchSample-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "sample", "delay", "test", "decision")
    default_timing: ClassVar[dict] = {"fixation": 300, "sample": 500, "delay": 1000, "test": 500,
                                      "decision": 900}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "sample_theta")
    n_trial_u: ClassVar[int] = 2

    @property
    def obs_dim(self) -> int:
        return 1 + self.dim_ring

    def _sample_trial_vars(self, u, params):
        return {"ground_truth": _pick(u[0], jnp.asarray([1, 2], _I32)),
                "sample_theta": _pick(u[1], jnp.asarray(self._theta(), _F32))}

    def _complete_trial(self, trial, params):
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


@dataclasses.dataclass(frozen=True)
class ContextDecisionMaking(_JaxTrialEnv):
    """obs = [fixation, mod1_1..mod1_R, mod2_1..mod2_R(, context1, context2 if explicit)];
    trial = {ground_truth in 1..R, other_choice, context, coh_1, coh_2}; the context-relevant
    modality shows ground_truth with coh_1 (modality 1 when context 0); correct action =
    ground_truth."""

    use_expl_context: bool = False

    name: ClassVar[str] = "ContextDecisionMaking-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus", "delay", "decision")
    default_timing: ClassVar[dict] = {"fixation": 300, "stimulus": 750,
                                      "delay": ("truncated_exponential", (600, 300, 3000)),
                                      "decision": 100}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0}
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "other_choice", "context", "coh_1", "coh_2")
    n_trial_u: ClassVar[int] = 5

    @property
    def obs_dim(self) -> int:
        return 1 + 2 * self.dim_ring + (2 if self.use_expl_context else 0)

    @property
    def noise_dim(self) -> int:
        return 2 * self.dim_ring

    def _sample_trial_vars(self, u, params):
        choices = jnp.arange(1, self.dim_ring + 1, dtype=_I32)
        return {"ground_truth": _pick(u[0], choices), "other_choice": _pick(u[1], choices),
                "context": _pick(u[2], params.contexts), "coh_1": _pick(u[3], params.cohs),
                "coh_2": _pick(u[4], params.cohs)}

    def _complete_trial(self, trial, params):
        theta = jnp.asarray(self._theta(), _F32)
        swap = trial["context"] == 1
        c1 = jnp.where(swap, trial["other_choice"], trial["ground_truth"])
        c2 = jnp.where(swap, trial["ground_truth"], trial["other_choice"])
        m1 = jnp.cos(theta - _take(theta, c1 - 1)) * (trial["coh_1"] / 200) + 0.5
        m2 = jnp.cos(theta - _take(theta, c2 - 1)) * (trial["coh_2"] / 200) + 0.5
        return trial, jnp.concatenate([m1, m2]).astype(_F32)

    def _obs(self, p, state, noise):
        fix = (p == 0).astype(_F32)
        parts = [fix[None], jnp.where(p == 1, state.stim + noise, 0.0)]
        if self.use_expl_context:
            parts.append(jax.nn.one_hot(state.trial["context"], 2, dtype=_F32))
        return jnp.concatenate(parts).astype(_F32)


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------
_COMMON = ("dt", "sigma", "timing", "rewards", "dim_ring")
_ALLOWED = {
    "PerceptualDecisionMaking-v0": _COMMON + ("cohs", "abort"),
    "DelayMatchSample-v0": _COMMON,
    "ContextDecisionMaking-v0": _COMMON + ("abort", "use_expl_context", "impl_context_modality"),
}


def make_jax_env(task: str, **kwargs) -> tuple[_JaxTrialEnv, EnvParams]:
    """(env, params) for a supported NeuroGym task id, with neurogym's constructor kwargs."""
    if task not in JAX_TASKS:
        raise ValueError(f"unknown or unsupported task {task!r} for the JAX backend "
                         f"(supported: {', '.join(JAX_TASKS)})")
    for k in kwargs:
        if k not in _ALLOWED[task]:
            raise ValueError(f"{task}: unsupported keyword argument {k!r} "
                             f"(supported: {', '.join(_ALLOWED[task])})")
    kw = dict(kwargs)
    dim_ring = kw.pop("dim_ring", 2)
    if not isinstance(dim_ring, numbers.Integral) or dim_ring < 1:
        raise ValueError(f"{task}: dim_ring must be a positive int, got {dim_ring!r}")
    dim_ring = int(dim_ring)
    for k in ("timing", "rewards"):
        if kw.get(k) is not None and not isinstance(kw[k], dict):
            raise ValueError(f"{task}: {k} must be a dict, got {kw[k]!r}")
    if task == "PerceptualDecisionMaking-v0":
        env = PerceptualDecisionMaking(dim_ring=dim_ring)
        cohs = kw.pop("cohs", None) or [0, 6.4, 12.8, 25.6, 51.2]  # neurogym: `cohs or default`
        if not all(_is_number(c) for c in cohs):
            raise ValueError(f"{task}: cohs must be numbers, got {cohs!r}")
        return env, env._make_params(cohs=list(cohs), **kw)
    if task == "DelayMatchSample-v0":
        env = DelayMatchSample(dim_ring=dim_ring)
        return env, env._make_params(cohs=[], **kw)
    expl = bool(kw.pop("use_expl_context", False))
    modality = kw.pop("impl_context_modality", 0)
    if expl:
        contexts = [0, 1]
    else:
        if modality not in (0, 1):
            raise ValueError(f"{task}: impl_context_modality must be 0 or 1 when "
                             f"use_expl_context is False, got {modality!r}")
        contexts = [int(modality)]
    env = ContextDecisionMaking(dim_ring=dim_ring, use_expl_context=expl)
    return env, env._make_params(cohs=[5, 15, 50], contexts=contexts, **kw)
