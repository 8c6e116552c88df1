"""The acting policy: the network applied to one step of a vector of envs, each carrying its own
memory state, and the one ε-greedy choice of actions (used by both collectors; the greedy rollouts
of plotting/rollout.py use `network_step` and `greedy`)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def epsilon_at(env_steps, start: float, end: float, decay_steps: int):
    """Linearly decayed exploration rate after `env_steps` environment steps."""
    decay = jnp.maximum(decay_steps, 1) if isinstance(decay_steps, jax.Array) else max(decay_steps, 1)  # traced in sweeps
    frac = jnp.clip(env_steps / decay, 0.0, 1.0)
    return start + frac * (end - start)


def network_step(network, params, state, obs, start, hidden: bool = False):
    """The network applied to one step of N envs, each with its own memory state.

    state: memory pytree with leaves [N, ...] carried into this step; obs [N, D]; start [N] bool
    (memory reset before reading obs). Returns (q [N, A], new state [N, ...], h): h is None, or
    with `hidden` the memory module's output at this step [N, H], read with flax's
    capture_intermediates from the QNetwork's `memory` submodule (so the memory modules need no
    hook). Without `hidden`, any object with QNetwork's `apply` will do."""

    def one(s, o, st):
        if not hidden:
            q, s_new = network.apply(params, o[None], st[None], s)
            return q[0], s_new, None
        (q, s_new), inter = network.apply(
            params, o[None], st[None], s, mutable=["intermediates"],
            capture_intermediates=lambda mdl, method: mdl.name == "memory" and method == "__call__")
        y, _ = inter["intermediates"]["memory"]["__call__"][0]
        return q[0], s_new, y[0]

    return jax.vmap(one)(state, obs, start)


def greedy(q):
    """The greedy actions [N] of q [N, A] (index type of argmax, int32 without x64)."""
    return jnp.argmax(q, axis=-1)


def epsilon_greedy(q, k_explore, k_action, epsilon):
    """ε-greedy actions [N] int32 from q [N, A]: env i explores when uniform(k_explore)[i] < epsilon,
    and then takes randint(k_action)[i] in [0, A). The two keys are the caller's, so that each
    collector keeps its own split of the step's key."""
    n, a = q.shape
    random_action = jax.random.randint(k_action, (n,), 0, a)
    explore = jax.random.uniform(k_explore, (n,)) < epsilon
    return jnp.where(explore, random_action, greedy(q)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=0)
def policy_step(network, params, state, obs, start, key, epsilon):
    """ε-greedy actions for N envs from our own PRNG (the host collector's step).

    state: memory pytree with leaves [N, ...] carried into this step; obs [N, D]; start [N] bool
    (memory reset before reading obs). Returns (actions [N] int32, new state [N, ...], q [N, A])."""
    q, new_state, _ = network_step(network, params, state, obs, start)
    k_explore, k_action = jax.random.split(key)
    return epsilon_greedy(q, k_explore, k_action, epsilon), new_state, q


def batched_initial_state(network, obs_dim: int, n: int):
    """The network's initial memory state stacked for n envs: leaves [n, ...]."""
    s = network.initial_state(obs_dim)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), s)
