"""Collection from the pure-JAX task ports (the `jax` backend), entirely inside jit.

`collect` runs S vector steps with `lax.scan` over steps and `vmap` over N envs, carrying every
env's memory state, and returns the episodes that ended as an `Episodes` batch for `buffer.add`,
plus trial statistics. Episodes are cut by the episode rule of collector/episode.py and actions
chosen by collector/policy.py, as in the host collector (collector/host.py), and each env's first
trial is left out of the statistics (for the ports it is a whole trial, but dropping it keeps both
backends identical).

Episodes are recorded in place: each env owns E recording slots of R = max_steps + 1 rows and
writes one row per step into its current slot; when an episode ends the env moves to the next slot.
After the S steps the completed slots are handed to the buffer and the unfinished episode moves to
slot 0. E = 1 + the most episodes one env can finish in S steps (from the task's shortest trial);
should that ever be exceeded the extra episode is dropped and `dropped_episodes` counts it.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from buffer import Episodes
from collector.episode import EpisodeSpec, advance
from collector.policy import batched_initial_state, epsilon_greedy, network_step


@struct.dataclass
class CollectorState:
    """Per-env state of the jitted collector; every leaf has a leading env axis [N]."""

    env_state: Any
    obs: jax.Array  # [N, D] observation to act on next
    start: jax.Array  # [N] memory start flag of that observation
    mem: Any  # memory state carried into that observation
    pos: jax.Array  # [N] row of the current episode being written
    slot: jax.Array  # [N] recording slot of the current episode
    ep_trials: jax.Array  # [N] trials finished in the current episode
    trial_reward: jax.Array  # [N]
    first_trial: jax.Array  # [N] still in the env's first trial
    rec_obs: jax.Array  # [N, E, R, D]
    rec_action: jax.Array  # [N, E, R]
    rec_reward: jax.Array  # [N, E, R]
    rec_reset: jax.Array  # [N, E, R]
    rec_rows: jax.Array  # [N, E] rows of each completed episode (0: slot not completed)
    rec_state: Any  # memory state per row [N, E, R, ...] or None


@struct.dataclass
class CollectStats:
    """Sums over the trials finished during a call (first trial of each env excluded)."""

    trials: jax.Array
    correct: jax.Array
    reward: jax.Array
    steps: jax.Array
    dropped_episodes: jax.Array
    log_perf: jax.Array  # [trial_log] performance of the first trials (evaluation only)
    log_reward: jax.Array  # [trial_log] their rewards

    @staticmethod
    def zeros(trial_log: int = 0) -> "CollectStats":
        i, f = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        return CollectStats(i, f, f, i, i, jnp.zeros((trial_log,), jnp.float32), jnp.zeros((trial_log,), jnp.float32))


class JaxCollector:
    """Static description of a jitted collector: env, network, episode rules and sizes."""

    def __init__(self, env, env_params, network, spec: EpisodeSpec, num_envs: int, steps_per_call: int,
                 store_state: bool = False, record: bool = True, trial_log: int = 0):
        self.env, self.env_params, self.network, self.spec = env, env_params, network, spec
        self.trial_log = trial_log
        self.n, self.steps, self.store_state, self.record = num_envs, steps_per_call, store_state, record
        self.num_actions = env.num_actions
        self.obs_dim = env.obs_dim
        shortest = spec.max_steps
        if spec.trials is not None:
            shortest = min(shortest, spec.trials * env.shortest_trial(env_params))
        # an env ends at most ceil(S / shortest) episodes in S steps, plus one slot for the open one
        self.slots = math.ceil(steps_per_call / max(shortest, 1)) + 1 if record else 0

    # -- state -------------------------------------------------------------------------------
    def init(self, key) -> CollectorState:
        n, r, e = self.n, self.spec.max_rows, self.slots
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(jax.random.split(key, n), self.env_params)
        mem = batched_initial_state(self.network, self.obs_dim, n)
        shape = (n, e, r) if self.record else (n, 0, 0)
        rec_state = None
        if self.store_state and self.record:
            rec_state = jax.tree.map(lambda x: jnp.zeros(shape + x.shape[1:], x.dtype), mem)
        return CollectorState(
            env_state=env_state, obs=obs.astype(jnp.float32), start=jnp.ones((n,), bool), mem=mem,
            pos=jnp.zeros((n,), jnp.int32), slot=jnp.zeros((n,), jnp.int32), ep_trials=jnp.zeros((n,), jnp.int32),
            trial_reward=jnp.zeros((n,), jnp.float32), first_trial=jnp.ones((n,), bool),
            rec_obs=jnp.zeros(shape + (self.obs_dim,), jnp.float32), rec_action=jnp.zeros(shape, jnp.int32),
            rec_reward=jnp.zeros(shape, jnp.float32), rec_reset=jnp.zeros(shape, bool),
            rec_rows=jnp.zeros(shape[:2], jnp.int32), rec_state=rec_state,
        )

    # -- one vector step ---------------------------------------------------------------------
    def _step(self, params, epsilon, carry, key):
        cs, stats = carry
        n, ar = self.n, jnp.arange(self.n)
        k_explore, k_action, k_env = jax.random.split(key, 3)
        q, mem_new, _ = network_step(self.network, params, cs.mem, cs.obs, cs.start)
        action = epsilon_greedy(q, k_explore, k_action, epsilon)
        obs2, env_state, reward, _, info = jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, n), cs.env_state, action, self.env_params
        )
        obs2 = obs2.astype(jnp.float32)
        reward = reward.astype(jnp.float32)

        rec = {}
        if self.record:
            at = (ar, cs.slot, cs.pos)
            rec = dict(
                rec_obs=cs.rec_obs.at[at].set(cs.obs),
                rec_action=cs.rec_action.at[at].set(action),
                rec_reward=cs.rec_reward.at[at].set(reward),
                rec_reset=cs.rec_reset.at[at].set(cs.start),
                rec_state=None if cs.rec_state is None else jax.tree.map(lambda r, m: r.at[at].set(m), cs.rec_state, cs.mem),
            )

        new_trial = info["new_trial"].astype(bool)
        counted = new_trial & ~cs.first_trial
        trial_reward = cs.trial_reward + reward
        perf = jnp.where(counted, info["performance"].astype(jnp.float32), 0.0)
        trial_total = jnp.where(counted, trial_reward, 0.0)
        log_perf, log_reward = stats.log_perf, stats.log_reward
        if self.trial_log:
            # exactly the first `trial_log` trials, in order of completion (env order within a step)
            idx = jnp.where(counted, stats.trials + jnp.cumsum(counted) - 1, self.trial_log)
            log_perf = log_perf.at[idx].set(perf, mode="drop")
            log_reward = log_reward.at[idx].set(trial_total, mode="drop")
        stats = stats.replace(
            trials=stats.trials + counted.sum(), correct=stats.correct + perf.sum(),
            reward=stats.reward + trial_total.sum(), steps=stats.steps + n, log_perf=log_perf, log_reward=log_reward,
        )
        cut = advance(self.spec, cs.pos, cs.ep_trials, new_trial, jnp)
        ended = cut.ended

        slot = cs.slot
        if self.record:
            # the final observation closes the episode as a row without an action
            at = (ar, cs.slot, jnp.where(ended, cut.steps, self.spec.max_rows))
            rec["rec_obs"] = rec["rec_obs"].at[at].set(obs2, mode="drop")
            rec["rec_action"] = rec["rec_action"].at[at].set(0, mode="drop")
            rec["rec_reward"] = rec["rec_reward"].at[at].set(0.0, mode="drop")
            rec["rec_reset"] = rec["rec_reset"].at[at].set(cut.trial_start, mode="drop")
            if cs.rec_state is not None:
                rec["rec_state"] = jax.tree.map(lambda r, m: r.at[at].set(m, mode="drop"), rec["rec_state"], mem_new)
            # no free slot left: the episode is dropped (its slot is reused) and counted
            keep = ended & (cs.slot < self.slots - 1)
            rec["rec_rows"] = cs.rec_rows.at[ar, cs.slot].set(jnp.where(keep, cut.steps + 1, cs.rec_rows[ar, cs.slot]))
            stats = stats.replace(dropped_episodes=stats.dropped_episodes + (ended & ~keep).sum())
            slot = jnp.where(keep, cs.slot + 1, cs.slot)

        cs = cs.replace(
            env_state=env_state, obs=obs2, start=cut.start, mem=mem_new,
            pos=cut.pos, slot=slot, ep_trials=cut.ep_trials,
            trial_reward=jnp.where(new_trial, 0.0, trial_reward), first_trial=cs.first_trial & ~new_trial, **rec,
        )
        return (cs, stats), None

    # -- S steps -------------------------------------------------------------------------------
    def collect(self, params, cs: CollectorState, epsilon, key):
        """Run S vector steps. Returns (new state, Episodes of the completed episodes with leaves
        [N * E, R, ...] (n_rows 0 for unused slots) or None when not recording, CollectStats)."""
        return self.collect_more(params, cs, CollectStats.zeros(self.trial_log), epsilon, key)

    def collect_more(self, params, cs: CollectorState, stats: CollectStats, epsilon, key):
        """`collect`, adding to running statistics."""
        step = lambda carry, k: self._step(params, epsilon, carry, k)
        (cs, stats), _ = jax.lax.scan(step, (cs, stats), jax.random.split(key, self.steps))
        if not self.record:
            return cs, None, stats
        n, e = self.n, self.slots
        flat = lambda x: x[:, :e].reshape((n * e,) + x.shape[2:])
        episodes = Episodes(
            obs=flat(cs.rec_obs), action=flat(cs.rec_action), reward=flat(cs.rec_reward), reset=flat(cs.rec_reset),
            n_rows=flat(cs.rec_rows), terminated=jnp.zeros((n * e,), bool),
            state=None if cs.rec_state is None else jax.tree.map(flat, cs.rec_state),
        )
        # the unfinished episode moves to slot 0; every other slot is free again
        ar = jnp.arange(n)
        move = lambda x: x.at[:, 0].set(x[ar, cs.slot])
        cs = cs.replace(
            rec_obs=move(cs.rec_obs), rec_action=move(cs.rec_action), rec_reward=move(cs.rec_reward),
            rec_reset=move(cs.rec_reset), rec_state=None if cs.rec_state is None else jax.tree.map(move, cs.rec_state),
            rec_rows=jnp.zeros_like(cs.rec_rows), slot=jnp.zeros_like(cs.slot),
        )
        return cs, episodes, stats

    def bytes_needed(self) -> int:
        """Memory of the recording slots [N, E, R, ...], in bytes (for up-front checks), read off
        the shapes `init` would make (jax.eval_shape: nothing is allocated)."""
        if not self.record:
            return 0
        cs = jax.eval_shape(self.init, jax.random.PRNGKey(0))
        rec = (cs.rec_obs, cs.rec_action, cs.rec_reward, cs.rec_reset, cs.rec_state)
        return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(rec))

    def max_rows_per_call(self) -> int:
        """Upper bound on the rows one `collect` hands to the buffer (S transitions plus one final
        row per completed episode, per env)."""
        return self.n * (self.steps + self.slots)


def evaluate_jax(env, env_params, network, spec: EpisodeSpec, params, key, num_envs: int, num_trials: int,
                 chunk: int = 64):
    """Greedy evaluation on the JAX port, inside jit: `num_envs` envs seeded by `key` (pass the same
    key every call for the same envs) run until `num_trials` trials are counted. Returns
    dict(performance, reward_per_trial, trials) over exactly the first num_trials trials."""
    col = JaxCollector(env, env_params, network, spec, num_envs, chunk, record=False, trial_log=num_trials)
    cs = col.init(key)

    def body(c):
        cs, st, k = c
        k, sub = jax.random.split(k)
        cs, _, st = col.collect_more(params, cs, st, 0.0, sub)
        return cs, st, k

    _, st, _ = jax.lax.while_loop(
        lambda c: c[1].trials < num_trials, body, (cs, CollectStats.zeros(num_trials), jax.random.fold_in(key, 1))
    )
    return dict(performance=st.log_perf.mean(), reward_per_trial=st.log_reward.mean(), trials=jnp.minimum(st.trials, num_trials))
