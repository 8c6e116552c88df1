"""DawTwoStep-v0 (neurogym 2.3.1, envs/native/dawtwostep.py): the Daw two-step task.

Its own small class (gymnax style) rather than a `TrialTask`: neurogym's task builds no ob/gt
arrays and no periods; its observations are produced by the actions (which second-stage state was
reached), and which second-stage state is the richer one is carried across trials.

A trial has two steps. Step 0 (first stage): action 0 aborts (reward `abort`, the trial ends after
this one step); action 1 leads to second-stage state 1 with probability 0.8 (else state 2), action
2 to state 2 with probability 0.8 (else state 1); the reward of the reached state is paid at once
(drawn at the trial's start: `correct` with probability 0.9 for the high-reward state, 0.1 for the
other) and `performance` = (action == ground_truth), ground_truth = hi_state + 1 (the action whose
common transition reaches the high-reward state). Step 1 (second stage): any non-zero action costs
`abort`; the trial ends whatever the action.

Cross-trial state: which second-stage state is the high-reward one (neurogym's
`state1_high_reward`, True when the env is built) flips with probability 0.025 at the start of
every trial, the first one included, so P(hi_state = 0 at trial k) = 0.5 + 0.5 * 0.95^k.

Observations, as neurogym's _step returns them (obs = [fixation, state 1, state 2], no noise): after
step 0 the one-hot of the reached state (channel 1 or 2); after step 1 [1, 0, 0], which is also
what the next trial's step 0 shows; after an abort at step 0 the next trial's step 0 shows zeros.
The state carries the current observation. `reset` starts the first trial showing [1, 0, 0] (as
after a completed trial; neurogym's reset instead consumes a step with a random action).

trial = {transition: int32[2] (the state action 1 / action 2 lead to, 1 or 2), reward: float32[2]
(what state 1 / state 2 pay this trial), hi_state (0 or 1), ground_truth (hi_state + 1)}.
Neurogym's new_trial ignores keyword arguments; this port's new_trial takes those four entries
(transition, reward, hi_state) so that a neurogym trial can be replayed.
Neurogym's info has no "gt" (the task builds no ground truth): the port reports ground_truth on
step 0 and 0 on step 1 (the action `performance` counts as correct). No r_tmax.

What an agent can reach: observations never depend on hi_state (only on the actions and the
transitions), so a policy that sees observations only cannot track the switches and gets 0.5 per
trial in the long run; it can only exploit the known start (state 1 high), e.g. always choosing
action 1 scores 0.5 + 0.5 * 0.95^k on trial k of a fresh env. The task table therefore gives no
ceiling and no target. Random policy: 1/3 (step 0 picks the ground truth one time in three).
Keyword arguments: dt (no effect on the rules), rewards (abort, correct), timing (ignored, as in
neurogym, which only warns).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from collector.tasks.base import _F32, _I32, _is_number, _take

P_COMMON = 0.8  # neurogym's p1 = p2: probability of the common transition
P_SWITCH = 0.025  # neurogym's p_switch
HIGH_P, LOW_P = 0.9, 0.1  # neurogym's high_reward_p, low_reward_p
_FIX = (1.0, 0.0, 0.0)


@struct.dataclass
class DawTwoStepParams:
    dt: jax.Array  # float32, ms per step (no effect)
    rewards: dict  # {"abort", "correct"}: float32
    sigma: jax.Array  # float32, always 0: no noise (the field generic code reads, as in base.EnvParams)


@struct.dataclass
class DawTwoStepState:
    t: jax.Array  # int32, 0 (first stage) or 1 (second stage)
    ends: jax.Array  # int32[2] = [1, 2], so that base.period_index and trial_length work
    num_tr: jax.Array  # int32, trials started since reset
    trial: dict  # this trial's parameters (see the module docstring)
    state1_high: jax.Array  # bool, carried across trials: state 1 is the high-reward state
    obs: jax.Array  # float32[3], the current observation (neurogym's task makes it in its step)
    perf: jax.Array  # float32, performance of this trial so far (set at stage 1)


@dataclasses.dataclass(frozen=True)
class DawTwoStep:
    name: ClassVar[str] = "DawTwoStep-v0"
    periods: ClassVar[tuple[str, ...]] = ("stage1", "stage2")
    default_timing: ClassVar[dict] = {}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing")
    trial_keys: ClassVar[tuple[str, ...]] = ("transition", "reward", "hi_state")
    obs_dim: ClassVar[int] = 3
    num_actions: ClassVar[int] = 3
    noise_dim: ClassVar[int] = 0

    @classmethod
    def make(cls, dt=100, rewards=None, timing=None):
        if not _is_number(dt) or dt <= 0:
            raise ValueError(f"{cls.name}: dt must be a positive number, got {dt!r}")
        rw = dict(cls.default_rewards)
        for k, v in (rewards or {}).items():
            if k not in rw:
                raise ValueError(f"{cls.name}: unsupported reward key {k!r} (this task uses: abort, correct)")
            if not _is_number(v):
                raise ValueError(f"{cls.name}: reward {k!r} must be a number, got {v!r}")
            rw[k] = v
        return cls(), DawTwoStepParams(dt=jnp.asarray(dt, _F32), rewards={k: jnp.asarray(v, _F32) for k, v in rw.items()},
                                       sigma=jnp.zeros((), _F32))

    # --- trials ---------------------------------------------------------------------------------
    def _sample(self, u, params, state1_high, num_tr, obs, forced=None) -> DawTwoStepState:
        """A trial from 5 uniforms (neurogym's five rng.rand() draws, in its order) and the carried
        high-reward flag; forced entries replace the drawn ones."""
        transition = jnp.stack([jnp.where(u[0] < P_COMMON, 1, 2), jnp.where(u[1] < P_COMMON, 2, 1)]).astype(_I32)
        state1_high = jnp.logical_xor(state1_high, u[2] < P_SWITCH)
        hi_state = jnp.where(state1_high, 0, 1).astype(_I32)
        forced = dict(forced or {})
        if "hi_state" in forced:
            hi_state = jnp.asarray(forced.pop("hi_state"), _I32)
            state1_high = hi_state == 0
        pay_hi = jnp.where(u[3] < HIGH_P, params.rewards["correct"], 0.0)
        pay_low = jnp.where(u[4] < LOW_P, params.rewards["correct"], 0.0)
        reward = jnp.where(hi_state == 0, jnp.stack([pay_hi, pay_low]), jnp.stack([pay_low, pay_hi])).astype(_F32)
        trial = {"transition": transition, "reward": reward}
        trial.update({k: jnp.broadcast_to(jnp.asarray(v, trial[k].dtype), trial[k].shape) for k, v in forced.items()})
        trial.update(hi_state=hi_state, ground_truth=hi_state + 1)
        return DawTwoStepState(t=jnp.zeros((), _I32), ends=jnp.asarray([1, 2], _I32), num_tr=jnp.asarray(num_tr, _I32),
                               trial=trial, state1_high=jnp.asarray(state1_high), obs=jnp.asarray(obs, _F32),
                               perf=jnp.zeros((), _F32))

    def new_trial(self, key, params, durations=None, num_tr=1, **forced) -> DawTwoStepState:
        """The first trial of a fresh env (state 1 high before its switch draw), showing [1, 0, 0];
        `forced` transition / reward / hi_state replace the drawn ones (to replay a neurogym trial)."""
        for k in forced:
            if k not in self.trial_keys:
                raise ValueError(f"{self.name}: unknown trial parameter {k!r} (known: {', '.join(self.trial_keys)})")
        if durations:
            raise ValueError(f"{self.name}: a trial has two fixed steps; it has no periods to set")
        u = jax.random.uniform(key, (5,), _F32)
        return self._sample(u, params, jnp.ones((), bool), num_tr, jnp.asarray(_FIX, _F32), forced)

    def reset(self, key, params):
        state = self.new_trial(key, params)
        return state.obs, state

    def get_obs(self, state, params, noise=None) -> jax.Array:
        return state.obs

    def gt_now(self, state, params=None) -> jax.Array:
        return jnp.where(state.t == 0, state.trial["ground_truth"], 0).astype(_I32)

    def trial_length(self, state) -> jax.Array:
        return state.ends[-1]

    def shortest_trial(self, params) -> int:
        return 1  # an abort at step 0

    def step(self, key, state: DawTwoStepState, action, params):
        """(obs[3], next state, reward, done=False, info), as neurogym's _step and step."""
        action = jnp.asarray(action, _I32)
        first = state.t == 0
        moved = action != 0
        reached = _take(state.trial["transition"], jnp.maximum(action - 1, 0))  # 1 or 2
        paid = _take(state.trial["reward"], reached - 1)
        abort = params.rewards["abort"]
        reward = jnp.where(first, jnp.where(moved, paid, abort), jnp.where(moved, abort, 0.0)).astype(_F32)
        correct = first & moved & (action == state.trial["ground_truth"])
        ended = ~first | ~moved
        # neurogym's ob: zeros after an abort, the reached state after stage 1, fixation after stage 2
        obs = jnp.where(first, jnp.where(moved, (jnp.arange(3) == reached).astype(_F32), 0.0),
                        jnp.asarray(_FIX, _F32))
        perf = jnp.where(first, correct, state.perf).astype(_F32)  # set at stage 1, reported when the trial ends
        fresh = self._sample(jax.random.uniform(key, (5,), _F32), params, state.state1_high, state.num_tr + 1, obs)
        cont = state.replace(t=state.t + 1, obs=obs, perf=perf)
        next_state = jax.tree.map(lambda a, b: jnp.where(ended, a, b), fresh, cont)
        info = {"new_trial": ended, "gt": self.gt_now(state), "performance": jnp.where(ended, perf, 0.0),
                "trial_step": state.t, "trial_params": state.trial}
        return obs, next_state, reward, jnp.zeros((), bool), info
