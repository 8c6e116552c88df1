"""The learner: what one training iteration computes, as pure functions built from the config.

One iteration: collect `train.steps_per_iter` vector steps with the ε-greedy policy, add the
episodes that ended to the replay buffer, then (once `train.learning_starts` env steps are in) run
`train.updates_per_iter` (sample, update) steps. An update before any episode has ended samples an
empty batch: zero gradients, so the parameters do not move, but Adam's step count, the
learning-rate schedule and the target-update period advance (both backends alike).

- `build_network`, `make_train_state`, `make_buffer`: the setup a config asks for.
- `update_block`: a block of updates as one pure function (lax.scan), with the non-finite guard.
- `make_jax_train`: the jax backend's whole iteration (collection on the pure-JAX task port,
  buffer, updates) and its evaluation as pure functions of one seed's `Carry`, purejaxrl style;
  backends.py vmaps them over seeds and jits them.

The host driver that runs iterations, writes rows and checkpoints is training.py; the two backends
(neurogym envs stepped in Python, or these pure functions) are in backends.py.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

import buffer as buf
from collector.episode import EpisodeSpec
from collector.jax_collector import CollectorState, JaxCollector, evaluate_jax
from collector.policy import epsilon_at
from config import ConfigError
from losses import LossConfig, TrainState, create_train_state, update
from memory import QNetwork, make_memory


def build_network(cfg: dict, num_actions: int) -> QNetwork:
    """The Q-network of model.memory / memory_kwargs / head; a bad keyword is a ConfigError."""
    m = cfg["model"]
    try:
        memory = make_memory(m["memory"], **m["memory_kwargs"])
    except ValueError as e:
        raise ConfigError(f"model.memory_kwargs: {e}") from None
    return QNetwork(memory=memory, num_actions=num_actions, head=tuple(m["head"]))


def episode_spec(cfg: dict) -> EpisodeSpec:
    """How the run cuts RL episodes from the endless stream of trials (docs/tasks.md). The cap
    must be a number: `episode.max_steps: auto` is measured by cli.check_run."""
    e = cfg["episode"]
    if not isinstance(e["max_steps"], int):
        raise ValueError(f"episode.max_steps is {e['max_steps']!r}: cli.check_run turns auto into steps first")
    return EpisodeSpec(trials=e["trials"], max_steps=e["max_steps"], reset_on_trial=e["reset_memory_on_trial"])


def stores_state(cfg: dict, batching: str) -> bool:
    """Whether the buffer keeps the memory state of every row (R2D2 segments)."""
    return batching == "segment" and cfg["segment"]["stored_state"]


def make_buffer(cfg: dict, batching: str, obs_dim: int, state_example=None) -> buf.Buffer:
    """The replay buffer of this batching mode with the config's sizes bound (buffer.py)."""
    cap = cfg["train"]["buffer_capacity"]
    if batching == "tape":
        t = cfg["tape"]
        return buf.make_tape_buffer(cap, obs_dim, t["size"], lanes=t["lanes"], max_episodes=t["max_episodes"])
    s = cfg["segment"]
    return buf.make_segment_buffer(
        cap, obs_dim, s["batch_size"], s["length"], burn_in=s["burn_in"], stride=s["stride"],
        stored_state=s["stored_state"], state_example=state_example,
    )


# The config keys whose values a sweep may vary inside one program (vmapped, sweep.py): each is a
# value the program reads, not a shape or a code path. Name in TrainState.hyper, or None for the
# values read elsewhere (the exploration schedule, the initial η and λ of a plastic memory).
VALUE_KEYS = {
    "train.lr": "lr", "train.lr_end": "lr_end", "train.gamma": "gamma", "train.huber_delta": "huber_delta",
    "train.target_tau": "target_tau", "train.eps_start": None, "train.eps_end": None, "train.eps_decay_steps": None,
    "model.memory_kwargs.eta_init": None, "model.memory_kwargs.lam_init": None,
}
INT_VALUE_KEYS = ("train.eps_decay_steps",)  # the integer ones (int32 under vmap); the rest are float32


def _lr_span(cfg: dict) -> tuple[int, int]:
    """(updates the rate is held, updates of its linear decay) for train.lr_end."""
    tr = cfg["train"]
    per_iter = tr["steps_per_iter"] * cfg["env"]["num_envs"]
    iters = -(-max(tr["total_env_steps"] - tr["learning_starts"], 0) // per_iter)
    total = max(1, iters * tr["updates_per_iter"])
    hold = int(tr["lr_decay_start"] * total)
    return hold, max(1, total - hold)


def learning_rate(cfg: dict):
    """train.lr, or (train.lr_end set) train.lr held for the first train.lr_decay_start of the run's
    updates, then a linear decay to train.lr_end at the last update."""
    tr = cfg["train"]
    if tr["lr_end"] is None:
        return tr["lr"]
    hold, steps = _lr_span(cfg)
    return optax.linear_schedule(tr["lr"], tr["lr_end"], steps, transition_begin=hold)


def make_train_state(cfg: dict, network, obs_dim: int, key, hp: dict | None = None):
    """Fresh parameters, optimiser state and target network for one seed. hp: {VALUE_KEYS key:
    scalar} values that replace the config's (a sweep's setting; traced under vmap)."""
    tr, hp = cfg["train"], hp or {}
    params = network.init(key, jnp.zeros((1, obs_dim)), jnp.ones((1,), bool))
    for name in ("eta", "lam"):  # a plastic memory's initial η / λ
        if f"model.memory_kwargs.{name}_init" in hp:
            memory = dict(params["params"]["memory"], **{name: jnp.asarray(hp[f"model.memory_kwargs.{name}_init"], jnp.float32)})
            params = dict(params, params=dict(params["params"], memory=memory))
    hyper = {VALUE_KEYS[k]: v for k, v in hp.items() if VALUE_KEYS.get(k)}
    hold, steps = _lr_span(cfg) if tr["lr_end"] is not None else (0, 1)
    loss_cfg = LossConfig(
        gamma=tr["gamma"], huber_delta=tr["huber_delta"], target_mode=tr["target_mode"],
        target_period=tr["target_period"], target_tau=tr["target_tau"], n_step=tr["n_step"],
        lr_hold=hold, lr_steps=steps,
    )
    if "lr" in hyper or "lr_end" in hyper:  # the rate is a value of the state: tx stops before it
        hyper.setdefault("lr", jnp.float32(tr["lr"]))
        if tr["lr_end"] is not None:
            hyper.setdefault("lr_end", jnp.float32(tr["lr_end"]))
        tx = optax.chain(optax.clip_by_global_norm(tr["grad_clip"]), optax.scale_by_adam())
    else:
        tx = optax.chain(optax.clip_by_global_norm(tr["grad_clip"]), optax.adam(learning_rate(cfg)))
    return create_train_state(network, params, tx, loss_cfg, hyper)


def update_block(sample, num_updates: int):
    """(train_state, buffer_state, key) -> (train_state, metrics): num_updates (sample, update)
    steps in one lax.scan. metrics: mean loss, q_mean and grad_norm, the parallel-scan fallbacks
    summed, and `bad`, the index within the block of the first update whose loss or parameters are
    not finite (-1 when all are)."""

    def run(ts, buffer_state, key):
        def step(ts, k):
            k_sample, _ = jax.random.split(k)  # the second half is unused: the update draws nothing
            ts, m = update(ts, sample(buffer_state, k_sample))
            leaves = jax.tree.leaves(ts.params)
            finite = jnp.isfinite(m["loss"]) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
            return ts, dict(loss=m["loss"], q_mean=m["q_mean"], grad_norm=m["grad_norm"], finite=finite,
                            fallbacks=m["scan_fallbacks"])

        ts, m = jax.lax.scan(step, ts, jax.random.split(key, num_updates))
        bad = jnp.where(jnp.all(m["finite"]), -1, jnp.argmin(m["finite"]))
        return ts, dict(loss=m["loss"].mean(), q_mean=m["q_mean"].mean(), grad_norm=m["grad_norm"].mean(), bad=bad,
                        fallbacks=m["fallbacks"].sum().astype(jnp.int32))

    return run


NO_UPDATES = dict(loss=0.0, q_mean=0.0, grad_norm=0.0, bad=-1, fallbacks=0)


@struct.dataclass
class Carry:
    """Everything one seed's jitted training loop carries (the jax backend)."""

    ts: TrainState
    buffer: buf.BufferState
    collector: CollectorState
    key: jax.Array
    eval_key: jax.Array
    env_steps: jax.Array
    updates: jax.Array
    trials: jax.Array  # training trials, correct answers and update metrics since the last row
    correct: jax.Array
    loss_sum: jax.Array
    q_sum: jax.Array
    grad_norm_sum: jax.Array
    train_iters: jax.Array
    fallbacks: jax.Array  # parallel-scan fallbacks since the last row
    dropped: jax.Array  # episodes the collector had no slot for since the last row
    bad_update: jax.Array  # first update (1-based) with a non-finite loss or parameter; -1: none
    hp: dict = struct.field(default_factory=dict)  # a sweep's values of VALUE_KEYS for this run


class JaxTrain(NamedTuple):
    """The jax backend's pure functions for one seed (vmap and jit them):
    init(seed, hp={}) -> Carry (hp: {VALUE_KEYS key: scalar}, a sweep's setting); iterate(carry, n) -> carry after n iterations (n may be traced);
    row(carry) -> (carry with the row's sums cleared, dict of the row's metrics but wall_s);
    evaluate(params, key, n_trials) -> dict(performance, reward_per_trial, trials)."""

    init: callable
    iterate: callable
    row: callable
    evaluate: callable
    per_iter: int  # env steps of one iteration


def make_jax_train(cfg: dict, batching: str, env, env_params, network) -> JaxTrain:
    """Build the jax backend's pure training functions for `cfg` on a pure-JAX task port."""
    tr, ev = cfg["train"], cfg["eval"]
    spec = episode_spec(cfg)
    obs_dim = env.obs_dim
    store_state = stores_state(cfg, batching)
    num_envs = cfg["env"]["num_envs"]
    collector = JaxCollector(env, env_params, network, spec, num_envs, tr["steps_per_iter"], store_state)
    state_example = network.initial_state(obs_dim) if store_state else None
    buffer = make_buffer(cfg, batching, obs_dim, state_example)
    block = update_block(buffer.sample, tr["updates_per_iter"])
    per_iter = tr["steps_per_iter"] * num_envs
    max_rows = collector.max_rows_per_call()

    def init(seed, hp=None):
        key, k_init, k_col = jax.random.split(jax.random.PRNGKey(seed), 3)
        zi, zf = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        return Carry(
            ts=make_train_state(cfg, network, obs_dim, k_init, hp), buffer=buffer.init(), hp=dict(hp or {}),
            collector=collector.init(k_col), key=key, eval_key=jax.random.fold_in(jax.random.PRNGKey(seed), 1),
            env_steps=zi, updates=zi, trials=zi, correct=zf, loss_sum=zf, q_sum=zf, grad_norm_sum=zf, train_iters=zi,
            fallbacks=zi, dropped=zi, bad_update=jnp.full((), -1, jnp.int32),
        )

    def epsilon(c: Carry, env_steps):
        v = lambda name: c.hp.get(f"train.{name}", tr[name])
        return epsilon_at(env_steps, v("eps_start"), v("eps_end"), v("eps_decay_steps"))

    def iteration(c: Carry) -> Carry:
        eps = epsilon(c, c.env_steps)
        key, k_col, k_train = jax.random.split(c.key, 3)
        cs, episodes, stats = collector.collect(c.ts.params, c.collector, eps, k_col)
        bs = buffer.add(c.buffer, episodes, max_rows=max_rows)
        env_steps = c.env_steps + per_iter
        learn = env_steps >= tr["learning_starts"]
        none = {k: jnp.asarray(v, jnp.int32 if k in ("bad", "fallbacks") else jnp.float32) for k, v in NO_UPDATES.items()}
        ts, m = jax.lax.cond(learn, lambda ts: block(ts, bs, k_train), lambda ts: (ts, none), c.ts)
        bad = jnp.where((c.bad_update < 0) & (m["bad"] >= 0), c.updates + m["bad"] + 1, c.bad_update)
        return c.replace(
            ts=ts, buffer=bs, collector=cs, key=key, env_steps=env_steps,
            updates=c.updates + learn * tr["updates_per_iter"], trials=c.trials + stats.trials,
            correct=c.correct + stats.correct, loss_sum=c.loss_sum + m["loss"], q_sum=c.q_sum + m["q_mean"],
            grad_norm_sum=c.grad_norm_sum + m["grad_norm"], train_iters=c.train_iters + learn,
            fallbacks=c.fallbacks + m["fallbacks"], dropped=c.dropped + stats.dropped_episodes, bad_update=bad,
        )

    def iterate(c: Carry, n) -> Carry:
        return jax.lax.fori_loop(0, n, lambda _, c: iteration(c), c)  # n traced: one compile

    def evaluate(params, key, n_trials):
        return evaluate_jax(env, env_params, network, spec, params, key, ev["num_envs"], n_trials)

    def row(c: Carry):
        result = evaluate(c.ts.params, c.eval_key, ev["trials"])
        eps = epsilon(c, c.env_steps - per_iter)
        n_it = jnp.maximum(c.train_iters, 1)
        mean = lambda total: jnp.where(c.train_iters > 0, total / n_it, jnp.nan)
        values = dict(
            env_steps=c.env_steps, updates=c.updates, eval_performance=result["performance"],
            eval_reward_per_trial=result["reward_per_trial"],
            train_performance=jnp.where(c.trials > 0, c.correct / jnp.maximum(c.trials, 1), jnp.nan),
            loss=mean(c.loss_sum), q_mean=mean(c.q_sum), epsilon=eps, scan_fallbacks=c.fallbacks,
            grad_norm=mean(c.grad_norm_sum), dropped_episodes=c.dropped,
        )
        zi, zf = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        cleared = c.replace(trials=zi, correct=zf, loss_sum=zf, q_sum=zf, grad_norm_sum=zf, train_iters=zi,
                            fallbacks=zi, dropped=zi)
        return cleared, values

    return JaxTrain(init=init, iterate=iterate, row=row, evaluate=evaluate, per_iter=per_iter)
