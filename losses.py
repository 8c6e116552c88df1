"""Double-DQN loss on tapes and on segments, and the update, as pure functions.

Both batching modes use the SAME per-transition loss (`td_huber`) and average it over valid
transitions, so that tape-vs-segment comparisons measure the batching, not the loss. Each network
runs once over the rows; the bootstrap for transition t is read from row t + 1 of the same pass
(the final observation of each episode is a row of its own, see buffer.py). Truncation (the end of
every NeuroGym episode) bootstraps; termination does not. See docs/batching.md.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from buffer import Segments, Tape


@struct.dataclass
class LossConfig:
    gamma: float = struct.field(pytree_node=False, default=0.99)
    huber_delta: float = struct.field(pytree_node=False, default=1.0)
    target_mode: str = struct.field(pytree_node=False, default="hard")  # "hard" | "polyak"
    target_period: int = struct.field(pytree_node=False, default=100)  # updates between hard copies
    target_tau: float = struct.field(pytree_node=False, default=0.005)  # Polyak rate
    n_step: int = struct.field(pytree_node=False, default=1)  # transitions summed before bootstrapping
    # the learning-rate schedule when the rate is a value of the state (TrainState.hyper["lr"]):
    # held for lr_hold updates, then linear to hyper["lr_end"] over lr_steps updates (when given)
    lr_hold: int = struct.field(pytree_node=False, default=0)
    lr_steps: int = struct.field(pytree_node=False, default=1)


# Settings an update can take as values of the state (TrainState.hyper) instead of constants, so
# that runs with different values vmap together (sweep.py): the LossConfig fields and the rate.
HYPER_KEYS = ("gamma", "huber_delta", "target_tau", "lr", "lr_end")


@struct.dataclass
class TrainState:
    """Everything an update changes, plus the static network, optimiser and loss settings.

    hyper: {name in HYPER_KEYS: scalar array} overriding the constants of cfg (and, with "lr",
    the optimiser's rate: tx is then the rate-free part, see `update`); empty for a plain run."""

    params: Any
    target_params: Any
    opt_state: Any
    updates: jax.Array  # number of updates applied
    network: Any = struct.field(pytree_node=False)
    tx: Any = struct.field(pytree_node=False)
    cfg: LossConfig = struct.field(pytree_node=False)
    hyper: dict = struct.field(default_factory=dict)


def create_train_state(network, params, tx, cfg: LossConfig, hyper: dict | None = None) -> TrainState:
    return TrainState(
        params=params,
        target_params=jax.tree.map(jnp.array, params),
        opt_state=tx.init(params),
        updates=jnp.zeros((), jnp.int32),
        network=network,
        tx=tx,
        cfg=cfg,
        hyper=dict(hyper or {}),
    )


def hyper_learning_rate(cfg: LossConfig, hyper: dict, count):
    """The rate of update number `count` (0-based) when it is a value of the state: hyper["lr"],
    held for cfg.lr_hold updates, then linear to hyper["lr_end"] over cfg.lr_steps (if given)."""
    if "lr_end" not in hyper:
        return hyper["lr"]
    # optax.linear_schedule's arithmetic, so that a value equal to the config's gives the same run
    done = jnp.clip(count - cfg.lr_hold, 0, cfg.lr_steps)
    frac = 1 - done / cfg.lr_steps
    return (hyper["lr"] - hyper["lr_end"]) * frac + hyper["lr_end"]


def td_huber(q, q_target, action, reward, bootstrap, mask, gamma, delta, n_step=1):
    """Per-transition double-DQN Huber loss along one sequence of rows, with n-step returns.

    q, q_target: [T, A] online and target Q-values of every row; action, reward, bootstrap, mask: [T].
    Transition t (mask[t]) is followed for up to n_step transitions while they stay valid (the
    episode's final-observation row, padding and the sequence's last row end it) and not terminal;
    with j the transitions taken, target = sum_{k<j} gamma^k r[t+k] + gamma^j b V(t+j), where
    V(s) = q_target[s, argmax_a q[s]] and b is 0 after a termination, else 1. n_step = 1 is the
    one-step target r[t] + gamma b[t] V(t+1).
    Returns (loss [T], q_taken [T]), both zero where mask is False; the last row never has a loss."""
    T = q.shape[0]
    a_star = jnp.argmax(q, axis=-1)
    value = jnp.take_along_axis(q_target, a_star[:, None], axis=-1)[:, 0]  # V(s) of every row
    m = mask.at[-1].set(False)  # the last row has no next row
    pad = lambda x, fill: jnp.concatenate([x, jnp.full((n_step,), fill, x.dtype)])
    m_p, r_p, b_p = pad(m, False), pad(reward, 0.0), pad(bootstrap, 0.0)
    # k = 0: transition t itself
    ret = reward
    alive = bootstrap  # still bootstrapping (no termination so far)
    disc = jnp.full((T,), gamma, q.dtype)  # gamma^j
    end = jnp.arange(T) + 1  # row of the bootstrap value, t + j
    go = jnp.ones((T,), bool)
    for k in range(1, n_step):
        go = go & (alive > 0) & m_p[k:k + T]  # transition t + k exists and follows on
        ret = ret + jnp.where(go, disc * r_p[k:k + T], 0.0)
        disc = jnp.where(go, disc * gamma, disc)
        alive = jnp.where(go, b_p[k:k + T], alive)
        end = jnp.where(go, end + 1, end)
    end = jnp.minimum(end, T - 1)
    target = ret + disc * alive * value[end]
    q_taken = jnp.take_along_axis(q, action[:, None], axis=-1)[:, 0]
    err = q_taken - jax.lax.stop_gradient(target)
    loss = jnp.where(m, optax.huber_loss(err, delta=delta), 0.0)
    return loss, jnp.where(m, q_taken, 0.0)


def _apply(network, params, x, start, state=None):
    """network.apply that also returns how many parallel scans fell back to the sequential scan
    (the memory's diagnostics hook reports it, e.g. the MPN with scan="parallel"; 0 for a model
    that reports none), so that a fallback is never silent."""
    (q, state), inter = network.apply(params, x, start, state, mutable=["intermediates"])
    diagnostics = network.diagnostics(inter)  # the memory contract's hook (memory/base.py)
    return q, state, diagnostics.get("scan_fallbacks", jnp.int32(0))


def tape_loss(params, target_params, network, tape: Tape, cfg: LossConfig):
    """Mean TD loss over the valid transitions of a tape: one pass of each network over it.

    A tape of K lanes (fields [K, N / K], buffer.make_tape_buffer(lanes=K)) runs the networks over
    the lanes side by side (vmap) with the same per-transition loss; since every lane holds whole
    episodes, each starting with a reset, this is exactly the loss of the one-lane tape that lays
    the lanes end to end."""
    run = lambda p, x, start: _apply(network, p, x, start)
    per_lane = td_huber
    if tape.obs.ndim == 3:  # lanes
        run = jax.vmap(run, in_axes=(None, 0, 0))
        per_lane = jax.vmap(td_huber, in_axes=(0, 0, 0, 0, 0, 0, None, None, None))
    q, _, fb = run(params, tape.obs, tape.reset)
    q_t, _, fb_t = run(target_params, tape.obs, tape.reset)
    loss, q_taken = per_lane(
        q, q_t, tape.action, tape.reward, tape.bootstrap, tape.mask, cfg.gamma, cfg.huber_delta, cfg.n_step
    )
    n = jnp.maximum(tape.mask.sum(), 1)
    fallbacks = jnp.sum(fb) + jnp.sum(fb_t)
    return loss.sum() / n, dict(q_mean=q_taken.sum() / n, transitions=tape.mask.sum(), scan_fallbacks=fallbacks)


def _segment_q(network, params, seg: Segments, init_state):
    """Q-values [W - burn_in, A] of one segment window. The burn-in rows only build the state
    (R2D2): they run under stop_gradient and get no loss."""
    b = seg.burn_in
    state, fb = init_state, 0
    if b > 0:
        _, state, fb = _apply(network, params, seg.obs[:b], seg.reset[:b], state)
        state = jax.lax.stop_gradient(state)
    q, _, fb2 = _apply(network, params, seg.obs[b:], seg.reset[b:], state)
    return q, fb + fb2


def segment_loss(params, target_params, network, seg: Segments, cfg: LossConfig):
    """Mean TD loss over the valid transitions of B segments, with the same per-transition loss."""
    b = seg.burn_in
    in_axes = Segments(0, 0, 0, 0, 0, 0, 0, None if seg.init_state is None else 0, b)

    def one(p, s):
        return _segment_q(network, p, s, s.init_state)

    q, fb = jax.vmap(one, in_axes=(None, in_axes))(params, seg)
    q_t, fb_t = jax.vmap(one, in_axes=(None, in_axes))(target_params, seg)
    rows = lambda x: x[:, b:]
    loss, q_taken = jax.vmap(td_huber, in_axes=(0, 0, 0, 0, 0, 0, None, None, None))(
        q, q_t, rows(seg.action), rows(seg.reward), rows(seg.bootstrap), rows(seg.mask), cfg.gamma, cfg.huber_delta,
        cfg.n_step,
    )
    n = jnp.maximum(seg.mask.sum(), 1)
    return loss.sum() / n, dict(q_mean=q_taken.sum() / n, transitions=seg.mask.sum(), scan_fallbacks=fb.sum() + fb_t.sum())


def batch_loss(params, target_params, network, batch, cfg: LossConfig):
    """Dispatch on the batch type (a static choice under jit)."""
    fn = tape_loss if isinstance(batch, Tape) else segment_loss
    return fn(params, target_params, network, batch, cfg)


def update(train_state: TrainState, batch):
    """One double-DQN update: gradient step (optax), parameter projection (the MPN's λ), target
    update (hard copy every `target_period` updates, or Polyak with rate `target_tau`). The update
    draws no randomness. Returns (train state, metrics: loss, grad_norm, q_mean, transitions,
    scan_fallbacks)."""
    ts = train_state
    cfg = ts.cfg
    if ts.hyper:  # values of the state in place of the constants (a sweep's vmapped settings)
        cfg = cfg.replace(**{k: v for k, v in ts.hyper.items() if k in ("gamma", "huber_delta", "target_tau")})
    (loss, aux), grads = jax.value_and_grad(batch_loss, has_aux=True)(
        ts.params, ts.target_params, ts.network, batch, cfg
    )
    updates, opt_state = ts.tx.update(grads, ts.opt_state, ts.params)
    if "lr" in ts.hyper:  # tx stops before the rate: scale as optax's scale_by_learning_rate does
        rate = hyper_learning_rate(cfg, ts.hyper, ts.updates)
        updates = jax.tree.map(lambda u: -rate * u, updates)
    params = ts.network.project(optax.apply_updates(ts.params, updates))
    n = ts.updates + 1
    if cfg.target_mode == "polyak":
        target = optax.incremental_update(params, ts.target_params, cfg.target_tau)
    else:
        target = optax.periodic_update(params, ts.target_params, n, cfg.target_period)
    metrics = dict(loss=loss, grad_norm=optax.tree.norm(grads), **aux)
    return ts.replace(params=params, target_params=target, opt_state=opt_state, updates=n), metrics
