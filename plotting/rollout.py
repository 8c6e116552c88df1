"""The greedy policy of a trained network acting on the pure-JAX task ports, one vector step at a
time, with the run's episode rules: shared by the analysis commands (plotting.psychometric,
plotting.dynamics), which log different things from the same steps.

The network step (collector.policy.network_step) and the episode rule (collector.episode.advance)
are the collectors' own; only the choice differs: always greedy, no exploration.
"""
from __future__ import annotations


def greedy_actor(network, params, hidden: bool = False):
    """act(mem [E, ...], obs [E, D], start [E]) -> dict(action [E] int32, q [E, A], mem (the state
    after the step) and, with `hidden`, h [E, H]: the memory module's output at this step, see
    collector.policy.network_step). Greedy: argmax of q. Without `hidden`, any object with
    QNetwork's `apply` will do."""
    import jax.numpy as jnp

    from collector.policy import greedy, network_step

    def act(mem, obs, start):
        q, mem_new, h = network_step(network, params, mem, obs, start, hidden)
        out = dict(action=greedy(q).astype(jnp.int32), q=q, mem=mem_new)
        if hidden:
            out["h"] = h
        return out

    return act


def initial_carry(env, env_params, network, key, num_envs: int) -> dict:
    """The state of `num_envs` freshly reset JAX envs and the greedy policy acting on them."""
    import jax
    import jax.numpy as jnp

    from collector.policy import batched_initial_state

    n = num_envs
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n), env_params)
    return dict(
        env_state=env_state, obs=obs.astype(jnp.float32), start=jnp.ones((n,), bool),
        mem=batched_initial_state(network, env.obs_dim, n), pos=jnp.zeros((n,), jnp.int32),
        ep_trials=jnp.zeros((n,), jnp.int32), first_trial=jnp.ones((n,), bool),
    )


def greedy_step(env, env_params, network, spec, params, hidden: bool = False):
    """step(carry, key) -> (carry, rec): one greedy vector step on the JAX envs of `initial_carry`
    (jittable; scan it). rec holds, per env [E, ...]: obs (the observation acted on), start (the
    memory was reset before reading it), action, q, mem (the memory state after the step), h (with
    `hidden`), period (index into env.periods of the step acted on), trial (dict: the parameters of
    the trial the step belongs to), gt (its ground truth: the correct action in the decision
    period, else 0), trial_step (index of the step in its trial), new_trial (the step ended its
    trial), counted (new_trial, and not the env's first trial: the statistics leave those out) and
    performance (1.0 when the step ended its trial with a correct choice)."""
    import jax
    import jax.numpy as jnp

    from collector.episode import advance
    from collector.jax_envs import period_index

    act = greedy_actor(network, params, hidden)
    n_of = lambda c: c["obs"].shape[0]

    def step(c, k):
        out = act(c["mem"], c["obs"], c["start"])
        period = jax.vmap(period_index)(c["env_state"])
        obs, env_state, _, _, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k, n_of(c)), c["env_state"], out["action"], env_params)
        new_trial = info["new_trial"].astype(bool)
        cut = advance(spec, c["pos"], c["ep_trials"], new_trial, jnp)
        rec = dict(
            obs=c["obs"], start=c["start"], period=period, trial=info["trial_params"], gt=info["gt"],
            trial_step=info["trial_step"], new_trial=new_trial, counted=new_trial & ~c["first_trial"],
            performance=info["performance"].astype(jnp.float32), **out,
        )
        c = dict(env_state=env_state, obs=obs.astype(jnp.float32), start=cut.start, mem=out["mem"], pos=cut.pos,
                 ep_trials=cut.ep_trials, first_trial=c["first_trial"] & ~new_trial)
        return c, rec

    return step
