"""The acting policy: one jitted step for a vector of envs, each carrying its own memory state."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def epsilon_at(env_steps, start: float, end: float, decay_steps: int):
    """Linearly decayed exploration rate after `env_steps` environment steps."""
    frac = jnp.clip(env_steps / max(decay_steps, 1), 0.0, 1.0)
    return start + frac * (end - start)


@functools.partial(jax.jit, static_argnums=0)
def policy_step(network, params, state, obs, start, key, epsilon):
    """ε-greedy actions for N envs from our own PRNG.

    state: memory pytree with leaves [N, ...] carried into this step; obs [N, D]; start [N] bool
    (memory reset before reading obs). Returns (actions [N] int32, new state [N, ...], q [N, A])."""

    def one(s, o, st):
        q, s_new = network.apply(params, o[None], st[None], s)
        return q[0], s_new

    q, new_state = jax.vmap(one)(state, obs, start)
    k_explore, k_action = jax.random.split(key)
    n, a = q.shape
    random_action = jax.random.randint(k_action, (n,), 0, a)
    explore = jax.random.uniform(k_explore, (n,)) < epsilon
    action = jnp.where(explore, random_action, jnp.argmax(q, axis=-1)).astype(jnp.int32)
    return action, new_state, q


def batched_initial_state(network, obs_dim: int, n: int):
    """The network's initial memory state stacked for n envs: leaves [n, ...]."""
    s = network.initial_state(obs_dim)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), s)
