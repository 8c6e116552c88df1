"""The training loop shared by tape_dqn.py and segment_dqn.py, and their command line.

One iteration: collect `steps_per_iter` vector steps with the ε-greedy policy, add the episodes that
ended to the buffer, then run `updates_per_iter` (sample, update) steps. Every
`eval.every_env_steps` the greedy policy is evaluated on separately seeded envs and one row is
appended (and flushed) to metrics.csv.

Two backends: `neurogym` steps the real envs in Python with a jitted policy and jitted updates;
`jax` runs whole iterations (collection on the pure-JAX task port, buffer, updates, target
update) inside one jitted function, for many iterations per call, vmapped over seeds.

Robustness: a checkpoint (checkpoint.py) is written every `checkpoint.every_updates` updates, at
the end, and on SIGINT/SIGTERM; `--resume DIR` continues from it, first cutting metrics.csv back to
the rows the checkpoint had seen so that no row is lost or written twice. A non-finite loss or
parameter stops the run naming the update and leaves the last good checkpoint in place.
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import pickle
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from flax import serialization, struct
from tqdm import tqdm

import buffer as buf
import checkpoint
from buffer import SegmentBuffer, TapeBuffer
from collector.host import EpisodeSpec, HostCollector, evaluate
from collector.jax_collector import CollectorState, JaxCollector, evaluate_jax
from collector.policy import epsilon_at
from config import ConfigError, load
from losses import LossConfig, TrainState, create_train_state, update
from memory import QNetwork, make_memory

METRICS = [
    "env_steps", "updates", "wall_s", "eval_performance", "eval_reward_per_trial",
    "train_performance", "loss", "q_mean", "epsilon", "scan_fallbacks",
]


class RunStopped(Exception):
    """The run stopped before its end (signal or numerical guard); `status` is the exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class StopFlag:
    """Set by the SIGINT/SIGTERM handler; the loop checks it between iterations."""

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        self.signum = signum


# ---- building blocks -----------------------------------------------------------------------


def build_network(cfg: dict, num_actions: int) -> QNetwork:
    m = cfg["model"]
    try:
        memory = make_memory(m["memory"], **m["memory_kwargs"])
    except ValueError as e:
        raise ConfigError(f"model.memory_kwargs: {e}") from None
    return QNetwork(memory=memory, num_actions=num_actions, head=tuple(m["head"]))


def episode_spec(cfg: dict) -> EpisodeSpec:
    e = cfg["episode"]
    return EpisodeSpec(trials=e["trials"], max_steps=e["max_steps"], reset_on_trial=e["reset_memory_on_trial"])


def make_sampler(cfg: dict, batching: str):
    """The buffer's sample function for this batching mode, with its static sizes bound."""
    if batching == "tape":
        t = cfg["tape"]
        return functools.partial(TapeBuffer.sample, tape_size=t["size"], max_episodes=t["max_episodes"])
    s = cfg["segment"]
    return functools.partial(
        SegmentBuffer.sample, batch_size=s["batch_size"], length=s["length"], burn_in=s["burn_in"],
        stride=s["stride"], stored_state=s["stored_state"],
    )


def make_train_state(cfg: dict, network, obs_dim: int, key):
    """Fresh parameters, optimiser state and target network for one seed."""
    tr = cfg["train"]
    params = network.init(key, jnp.zeros((1, obs_dim)), jnp.ones((1,), bool))
    tx = optax.chain(optax.clip_by_global_norm(tr["grad_clip"]), optax.adam(tr["lr"]))
    loss_cfg = LossConfig(
        gamma=tr["gamma"], huber_delta=tr["huber_delta"], target_mode=tr["target_mode"],
        target_period=tr["target_period"], target_tau=tr["target_tau"],
    )
    return create_train_state(network, params, tx, loss_cfg)


def update_block(sample, num_updates: int):
    """(train_state, buffer_state, key) -> (train_state, metrics): num_updates (sample, update)
    steps in one lax.scan. metrics: mean loss and q_mean, and `bad`, the index within the block of
    the first update whose loss or parameters are not finite (-1 when all are)."""

    def run(ts, buffer_state, key):
        def step(ts, k):
            k_sample, k_update = jax.random.split(k)
            ts, m = update(ts, sample(buffer_state, k_sample), k_update)
            leaves = jax.tree.leaves(ts.params)
            finite = jnp.isfinite(m["loss"]) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
            return ts, dict(loss=m["loss"], q_mean=m["q_mean"], finite=finite, fallbacks=m["scan_fallbacks"])

        ts, m = jax.lax.scan(step, ts, jax.random.split(key, num_updates))
        bad = jnp.where(jnp.all(m["finite"]), -1, jnp.argmin(m["finite"]))
        return ts, dict(loss=m["loss"].mean(), q_mean=m["q_mean"].mean(), bad=bad,
                        fallbacks=m["fallbacks"].sum().astype(jnp.int32))

    return run


def make_train_iteration(sample, num_updates: int):
    """Jitted `update_block` (the neurogym backend's update step)."""
    return jax.jit(update_block(sample, num_updates))


def _add_in_chunks(add, state, eps, max_per_add: int):
    """Add an Episodes batch in pieces small enough that one add never wraps onto itself."""
    e = eps.action.shape[0]
    if e <= max_per_add:
        return add(state, eps)
    for i in range(0, e, max_per_add):
        state = add(state, jax.tree.map(lambda x: x[i : i + max_per_add], eps))
    return state


def _check_memory(need: int, what: str) -> None:
    """Fail at once, quoting the figures, when the run's arrays cannot fit in memory."""
    import psutil

    avail = psutil.virtual_memory().available
    if need > 0.9 * avail:
        raise ConfigError(
            f"train.buffer_capacity: {what} need {need / 2**30:.2f} GiB but only {avail / 2**30:.2f} GiB of memory is available"
        )


# ---- run folders and bookkeeping -----------------------------------------------------------


class RunFolder:
    """The run's output folder: config.yaml, metrics.csv (appended and flushed row by row),
    summary.json and params.msgpack. A new run never reuses a non-empty folder; `reopen` continues
    a checkpointed one, first cutting metrics.csv back to the rows the checkpoint had seen."""

    @staticmethod
    def check(path: Path) -> None:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"--out {path}: exists and is not an empty folder; choose another")

    def __init__(self, path: Path, cfg: dict | None, rows: int | None = None):
        self.path = path
        if rows is None:
            self.check(path)
            path.mkdir(parents=True, exist_ok=True)
            (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            self._file = open(path / "metrics.csv", "w", newline="")
            self._csv = csv.DictWriter(self._file, fieldnames=METRICS, lineterminator="\n")
            self._csv.writeheader()
        else:
            lines = (path / "metrics.csv").read_bytes().splitlines(keepends=True)
            if len(lines) < rows + 1:
                raise ConfigError(f"--resume {path}: metrics.csv has {len(lines) - 1} rows, the checkpoint expects {rows}")
            (path / "metrics.csv").write_bytes(b"".join(lines[: rows + 1]))
            self._file = open(path / "metrics.csv", "a", newline="")
            self._csv = csv.DictWriter(self._file, fieldnames=METRICS, lineterminator="\n")
        self._file.flush()

    @classmethod
    def reopen(cls, path: Path, rows: int) -> "RunFolder":
        return cls(path, None, rows)

    def row(self, row: dict) -> None:
        self._csv.writerow({k: row.get(k, "") for k in METRICS})
        self._file.flush()

    def finish(self, summary: dict, params) -> None:
        self._file.close()
        (self.path / "params.msgpack").write_bytes(serialization.to_bytes(params))
        (self.path / "summary.json").write_text(json.dumps(summary, indent=2))


def _plain(v):
    """A JSON/CSV-friendly Python number (float32 results rounded to the digits they carry)."""
    if isinstance(v, (np.ndarray, jax.Array, np.generic)):
        v = np.asarray(v).item()
        if isinstance(v, float):
            return float(f"{v:.6g}")
    return v


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


class Tracker:
    """One seed's bookkeeping: metrics.csv rows, the steps and seconds to the target, the summary."""

    def __init__(self, cfg: dict, batching: str, seed: int, run: RunFolder | None, saved: dict | None = None,
                 seeds_in_program: int = 1):
        self.cfg, self.batching, self.seed, self.run = cfg, batching, seed, run
        self.seeds_in_program = seeds_in_program  # seeds trained side by side: wall times are the program's
        self.last = dict(eval_performance=float("nan"), loss=float("nan"))
        self.reached = None
        self.rows = 0
        if saved:
            self.reached, self.rows, self.last = saved["reached"], saved["rows"], saved["last"]

    def saved(self) -> dict:
        return dict(reached=self.reached, rows=self.rows, last=self.last)

    def row(self, **row) -> dict:
        row = {k: _plain(v) for k, v in row.items()}
        if self.run is not None:
            self.run.row(row)
        self.rows += 1
        self.last = row
        target = self.cfg["eval"]["target"]
        if self.reached is None and target is not None and row["eval_performance"] >= target:
            self.reached = dict(env_steps=row["env_steps"], wall_s=row["wall_s"])
        return row

    def finish(self, final: dict, env_steps: int, updates: int, wall: float, params) -> dict:
        cfg = self.cfg
        summary = dict(
            experiment=cfg["name"], batching=self.batching, backend=cfg["env"]["backend"], task=cfg["env"]["task"],
            memory=cfg["model"]["memory"], seed=self.seed, env_steps=int(env_steps), updates=int(updates),
            wall_s=round(wall, 3), final_eval_performance=_plain(final["performance"]),
            final_eval_reward_per_trial=_plain(final["reward_per_trial"]), final_eval_trials=int(final["trials"]),
            target=cfg["eval"]["target"],
            target_reached_env_steps=self.reached and self.reached["env_steps"],
            target_reached_wall_s=self.reached and self.reached["wall_s"],
            eval_trials=cfg["eval"]["trials"], seeds_in_program=self.seeds_in_program,
            device=str(jax.devices()[0]), jax_version=jax.__version__,
        )
        if self.run is not None:
            self.run.finish(summary, params)
        return summary


def _postfix(bar, last: dict, eps: float) -> None:
    bar.set_postfix(eval=f"{last['eval_performance']:.3f}", loss=f"{last['loss']:.4f}", eps=f"{eps:.3f}", refresh=False)


def _non_finite(seed: int, update_index: int, ckpt_dir) -> RunStopped:
    where = f"; the last good checkpoint is {Path(ckpt_dir) / checkpoint.FILENAME}" if ckpt_dir else ""
    return RunStopped(f"non-finite loss or parameters at update {update_index} (seed {seed}); run stopped{where}", 3)


def _interrupted(stop: StopFlag, env_steps: int, ckpt_dir) -> RunStopped:
    name = signal.Signals(stop.signum).name
    where = f"; checkpoint written, continue with --resume {ckpt_dir}" if ckpt_dir else ""
    return RunStopped(f"{name} at {env_steps} env steps{where}", 128 + stop.signum)


# ---- training ------------------------------------------------------------------------------


def train(cfg: dict, batching: str, runs=None, progress: bool = True, seeds=None, ckpt_dir=None,
          resume: dict | None = None, stop: StopFlag | None = None) -> list[dict]:
    """Train a double DQN with tape (`batching="tape"`) or segment batching on cfg, once per seed
    (default: cfg["seed"]); runs: one RunFolder (or None) per seed. ckpt_dir: where checkpoints go
    (None: no checkpoints); resume: a loaded checkpoint to continue from. Returns one summary per seed."""
    seeds = list(seeds or [cfg["seed"]])
    runs = list(runs or [None] * len(seeds))
    stop = stop or StopFlag()
    if cfg["env"]["backend"] == "jax":
        return _train_jax(cfg, batching, seeds, runs, progress, ckpt_dir, resume, stop)
    summaries = []
    first = resume["seed_index"] if resume else 0
    for i in range(first, len(seeds)):
        own = resume if (resume and i == first and not resume.get("fresh")) else None
        summaries.append(_train_host(cfg, batching, seeds, i, runs[i], progress, ckpt_dir, own, stop))
    return summaries


def _train_host(cfg, batching, seeds, index, run, progress, ckpt_dir, resume, stop) -> dict:
    """The neurogym backend, for seeds[index]: envs stepped in Python, jitted policy and updates."""
    tr, ev = cfg["train"], cfg["eval"]
    seed = seeds[index]
    spec = episode_spec(cfg)
    task, task_kwargs = cfg["env"]["task"], cfg["env"]["kwargs"]
    store_state = batching == "segment" and cfg["segment"]["stored_state"]

    probe = _make_probe_env(task, task_kwargs)
    network = build_network(cfg, probe.action_space.n)
    obs_dim = int(np.prod(probe.observation_space.shape))
    state_example = network.initial_state(obs_dim) if store_state else None
    _check_memory(buf.bytes_needed(tr["buffer_capacity"], obs_dim, state_example), "the replay buffer's arrays")
    key, k_init = jax.random.split(jax.random.PRNGKey(seed))
    ts = make_train_state(cfg, network, obs_dim, k_init)
    buffer_state = buf.init(tr["buffer_capacity"], obs_dim, state_example)
    add = jax.jit(buf.add)
    max_per_add = max(1, 1 << (int(tr["buffer_capacity"] // spec.max_rows).bit_length() - 1))
    train_iteration = make_train_iteration(make_sampler(cfg, batching), tr["updates_per_iter"])

    if resume is None:
        collector = HostCollector(task, task_kwargs, cfg["env"]["num_envs"], seed, 0, network, spec, store_state)
        loop = dict(env_steps=0, updates=0, next_eval=ev["every_env_steps"], acc_perf=[], acc_loss=[], acc_q=[],
                    elapsed=0.0, last_ckpt_updates=0)
        tracker = Tracker(cfg, batching, seed, run)
    else:
        collector = pickle.loads(resume["collector"])
        collector.network = network
        ts = checkpoint.from_plain(ts, resume["ts"])
        buffer_state = checkpoint.from_plain(buffer_state, resume["buffer"])
        key = jnp.asarray(resume["key"])
        loop = resume["loop"]
        tracker = Tracker(cfg, batching, seed, run, resume["trackers"][0])

    def save(finished=False):
        if ckpt_dir is None:
            return
        loop["last_ckpt_updates"] = loop["updates"]
        checkpoint.save(ckpt_dir, dict(
            backend="neurogym", batching=batching, config=cfg, seeds=seeds, seed_index=index, finished=finished,
            ts=checkpoint.to_plain(ts), buffer=checkpoint.to_plain(buffer_state), key=np.asarray(key),
            collector=pickle.dumps(collector), loop=dict(loop, elapsed=time.perf_counter() - t0),
            trackers=[tracker.saved()], rows=[tracker.rows],
        ))

    def run_eval(n_trials):
        return evaluate(network, ts.params, task, task_kwargs, spec, ev["num_envs"], seed, n_trials)

    total = tr["total_env_steps"]
    per_iter = tr["steps_per_iter"] * cfg["env"]["num_envs"]
    t0 = time.perf_counter() - loop["elapsed"]
    bar = tqdm(total=total, initial=loop["env_steps"], unit="step", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    eps = tr["eps_start"]
    while loop["env_steps"] < total:
        if stop.signum is not None:
            save()
            raise _interrupted(stop, loop["env_steps"], ckpt_dir)
        eps = float(epsilon_at(loop["env_steps"], tr["eps_start"], tr["eps_end"], tr["eps_decay_steps"]))
        key, k_col, k_train = jax.random.split(key, 3)
        episodes, stats = collector.run(ts.params, tr["steps_per_iter"], eps, k_col)
        if episodes is not None:
            buffer_state = _add_in_chunks(add, buffer_state, episodes, max_per_add)
        loop["env_steps"] += per_iter
        loop["acc_perf"].append(stats.performance)
        if loop["env_steps"] >= tr["learning_starts"] and int(buf.num_transitions(buffer_state)) > 0:
            ts, m = train_iteration(ts, buffer_state, k_train)
            if int(m["bad"]) >= 0:
                raise _non_finite(seed, loop["updates"] + int(m["bad"]) + 1, ckpt_dir if loop["last_ckpt_updates"] else None)
            loop["updates"] += tr["updates_per_iter"]
            loop["acc_loss"].append(float(m["loss"]))
            loop["acc_q"].append(float(m["q_mean"]))
            loop["fallbacks"] = loop.get("fallbacks", 0) + int(m["fallbacks"])
        bar.update(per_iter)
        if loop["env_steps"] >= loop["next_eval"] or loop["env_steps"] >= total:
            loop["next_eval"] += ev["every_env_steps"]
            result = run_eval(ev["trials"])
            tracker.row(
                env_steps=loop["env_steps"], updates=loop["updates"], wall_s=round(time.perf_counter() - t0, 3),
                eval_performance=result["performance"], eval_reward_per_trial=result["reward_per_trial"],
                train_performance=_mean(np.concatenate(loop["acc_perf"])), loss=_mean(loop["acc_loss"]),
                q_mean=_mean(loop["acc_q"]), epsilon=eps, scan_fallbacks=loop.get("fallbacks", 0),
            )
            loop["acc_perf"], loop["acc_loss"], loop["acc_q"], loop["fallbacks"] = [], [], [], 0
        if cfg["checkpoint"]["every_updates"] and loop["updates"] - loop["last_ckpt_updates"] >= cfg["checkpoint"]["every_updates"]:
            save()
        _postfix(bar, tracker.last, eps)
    bar.close()
    wall = time.perf_counter() - t0
    summary = tracker.finish(run_eval(ev["final_trials"]), loop["env_steps"], loop["updates"], wall, ts.params)
    if index == len(seeds) - 1:
        save(finished=True)
    elif ckpt_dir is not None:  # this seed is done: a resume starts the next one afresh
        checkpoint.save(ckpt_dir, dict(backend="neurogym", batching=batching, config=cfg, seeds=seeds,
                                       seed_index=index + 1, finished=False, fresh=True, rows=[0]))
    return summary


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
    train_iters: jax.Array
    fallbacks: jax.Array  # parallel-scan fallbacks since the last row
    bad_update: jax.Array  # first update (1-based) with a non-finite loss or parameter; -1: none


def _train_jax(cfg, batching, seeds, runs, progress, ckpt_dir, resume, stop) -> list[dict]:
    """The jax backend: collection, buffer and updates of one iteration in one jitted function,
    run for many iterations per call inside jit, vmapped over seeds."""
    from collector.jax_envs import make_jax_env

    tr, ev = cfg["train"], cfg["eval"]
    spec = episode_spec(cfg)
    env, env_params = _make_jax_env(make_jax_env, cfg)
    network = build_network(cfg, env.num_actions)
    obs_dim = env.obs_dim
    store_state = batching == "segment" and cfg["segment"]["stored_state"]
    num_envs = cfg["env"]["num_envs"]
    collector = JaxCollector(env, env_params, network, spec, num_envs, tr["steps_per_iter"], store_state)
    block = update_block(make_sampler(cfg, batching), tr["updates_per_iter"])
    per_iter = tr["steps_per_iter"] * num_envs
    state_example = network.initial_state(obs_dim) if store_state else None
    max_rows = collector.max_rows_per_call()
    if max_rows > tr["buffer_capacity"]:
        raise ConfigError(
            f"train.buffer_capacity: {tr['buffer_capacity']} rows cannot take one iteration's "
            f"{max_rows} rows (env.num_envs x (train.steps_per_iter + episodes per iteration))"
        )
    _check_memory(
        len(seeds) * (buf.bytes_needed(tr["buffer_capacity"], obs_dim, state_example) + collector.bytes_needed()),
        f"the replay buffers and recording arrays of {len(seeds)} seed(s)",
    )

    def init(seed):
        key, k_init, k_col = jax.random.split(jax.random.PRNGKey(seed), 3)
        zi, zf = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        return Carry(
            ts=make_train_state(cfg, network, obs_dim, k_init),
            buffer=buf.init(tr["buffer_capacity"], obs_dim, state_example),
            collector=collector.init(k_col), key=key, eval_key=jax.random.fold_in(jax.random.PRNGKey(seed), 1),
            env_steps=zi, updates=zi, trials=zi, correct=zf, loss_sum=zf, q_sum=zf, train_iters=zi, fallbacks=zi,
            bad_update=jnp.full((), -1, jnp.int32),
        )

    def iteration(c: Carry) -> Carry:
        eps = epsilon_at(c.env_steps, tr["eps_start"], tr["eps_end"], tr["eps_decay_steps"])
        key, k_col, k_train = jax.random.split(c.key, 3)
        cs, episodes, stats = collector.collect(c.ts.params, c.collector, eps, k_col)
        bs = buf.add(c.buffer, episodes, max_rows=max_rows)
        env_steps = c.env_steps + per_iter
        learn = env_steps >= tr["learning_starts"]
        no_updates = lambda ts: (ts, dict(loss=jnp.zeros(()), q_mean=jnp.zeros(()), bad=jnp.full((), -1, jnp.int32),
                                          fallbacks=jnp.zeros((), jnp.int32)))
        ts, m = jax.lax.cond(learn, lambda ts: block(ts, bs, k_train), no_updates, c.ts)
        bad = jnp.where((c.bad_update < 0) & (m["bad"] >= 0), c.updates + m["bad"] + 1, c.bad_update)
        return c.replace(
            ts=ts, buffer=bs, collector=cs, key=key, env_steps=env_steps,
            updates=c.updates + learn * tr["updates_per_iter"], trials=c.trials + stats.trials,
            correct=c.correct + stats.correct, loss_sum=c.loss_sum + m["loss"], q_sum=c.q_sum + m["q_mean"],
            train_iters=c.train_iters + learn, fallbacks=c.fallbacks + m["fallbacks"], bad_update=bad,
        )

    def evaluate_params(params, key, n_trials):
        return evaluate_jax(env, env_params, network, spec, params, key, ev["num_envs"], n_trials)

    def run_iters(c: Carry, n):
        return jax.lax.fori_loop(0, n, lambda _, c: iteration(c), c)  # n traced: one compile

    def row(c: Carry):
        result = evaluate_params(c.ts.params, c.eval_key, ev["trials"])
        eps = epsilon_at(c.env_steps - per_iter, tr["eps_start"], tr["eps_end"], tr["eps_decay_steps"])
        n_it = jnp.maximum(c.train_iters, 1)
        values = dict(
            env_steps=c.env_steps, updates=c.updates, eval_performance=result["performance"],
            eval_reward_per_trial=result["reward_per_trial"],
            train_performance=jnp.where(c.trials > 0, c.correct / jnp.maximum(c.trials, 1), jnp.nan),
            loss=jnp.where(c.train_iters > 0, c.loss_sum / n_it, jnp.nan),
            q_mean=jnp.where(c.train_iters > 0, c.q_sum / n_it, jnp.nan), epsilon=eps, scan_fallbacks=c.fallbacks,
        )
        zi, zf = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        return c.replace(trials=zi, correct=zf, loss_sum=zf, q_sum=zf, train_iters=zi, fallbacks=zi), values

    run_iters_v = jax.jit(jax.vmap(run_iters, in_axes=(0, None)))
    row_v = jax.jit(jax.vmap(row))
    final_eval = jax.jit(jax.vmap(evaluate_params, in_axes=(0, 0, None)), static_argnums=2)

    total_iters = -(-tr["total_env_steps"] // per_iter)
    iters_per_row = max(1, -(-ev["every_env_steps"] // per_iter))
    every = cfg["checkpoint"]["every_updates"]
    iters_per_ckpt = max(1, -(-every // tr["updates_per_iter"])) if every else total_iters
    carry = jax.jit(jax.vmap(init))(jnp.asarray(seeds, jnp.uint32))
    if resume is None:
        done, last_ckpt, elapsed, saved = 0, 0, 0.0, [None] * len(seeds)
    else:
        carry = checkpoint.from_plain(carry, resume["carry"])
        done, last_ckpt, elapsed, saved = resume["done"], resume["done"], resume["elapsed"], resume["trackers"]
    trackers = [Tracker(cfg, batching, s, r, sv, seeds_in_program=len(seeds)) for s, r, sv in zip(seeds, runs, saved)]
    t0 = time.perf_counter() - elapsed

    def save(finished=False):
        if ckpt_dir is not None:
            checkpoint.save(ckpt_dir, dict(
                backend="jax", batching=batching, config=cfg, seeds=seeds, finished=finished,
                carry=checkpoint.to_plain(carry), done=done, elapsed=time.perf_counter() - t0,
                trackers=[t.saved() for t in trackers], rows=[t.rows for t in trackers],
            ))

    bar = tqdm(total=total_iters * per_iter, initial=done * per_iter, unit="step", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    while done < total_iters:
        if stop.signum is not None:
            save()
            raise _interrupted(stop, done * per_iter, ckpt_dir)
        to_row = iters_per_row - done % iters_per_row
        to_ckpt = iters_per_ckpt - (done - last_ckpt)
        n = max(1, min(to_row, to_ckpt, total_iters - done))
        new = run_iters_v(carry, jnp.int32(n))
        bad = np.asarray(new.bad_update)
        if (bad >= 0).any():
            i = int(np.flatnonzero(bad >= 0)[0])
            raise _non_finite(seeds[i], int(bad[i]), ckpt_dir if last_ckpt else None)
        carry, done = new, done + n
        if done % iters_per_row == 0 or done == total_iters:
            carry, values = row_v(carry)
            values = jax.device_get(values)
            wall = round(time.perf_counter() - t0, 3)
            for i, tracker in enumerate(trackers):
                tracker.row(wall_s=wall, **{k: v[i] for k, v in values.items()})
            _postfix(bar, trackers[0].last, float(values["epsilon"][0]))
        if every and done - last_ckpt >= iters_per_ckpt:
            last_ckpt = done
            save()
        bar.update(n * per_iter)
    bar.close()
    wall = time.perf_counter() - t0
    final = jax.device_get(final_eval(carry.ts.params, carry.eval_key, ev["final_trials"]))
    out = []
    for i, tracker in enumerate(trackers):
        params_i = jax.tree.map(lambda x: np.asarray(x[i]), carry.ts.params)
        out.append(tracker.finish(
            {k: v[i] for k, v in final.items()}, int(carry.env_steps[i]), int(carry.updates[i]), wall, params_i
        ))
    save(finished=True)
    return out


def _make_jax_env(make_jax_env, cfg):
    try:
        return make_jax_env(cfg["env"]["task"], **cfg["env"]["kwargs"])
    except (ValueError, TypeError) as e:
        raise ConfigError(f"env.kwargs: {e}") from None


def _make_probe_env(task, task_kwargs):
    from collector.ngym_compat import make_env

    try:
        env = make_env(task, **task_kwargs)
    except ValueError as e:
        raise ConfigError(f"env: {e}") from None
    except TypeError as e:
        raise ConfigError(f"env.kwargs: {task} rejects them: {e}") from None
    if not hasattr(env.action_space, "n"):
        raise ConfigError(f"env.task: {task} does not have discrete actions")
    return env


# ---- command line --------------------------------------------------------------------------


def enable_compile_cache() -> None:
    """Keep compiled XLA programs on disk (JAX_COMPILATION_CACHE_DIR, default
    ~/.cache/mpn-dqn/xla) so that a second run of the same experiment skips most compilation."""
    import os

    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(Path.home() / ".cache" / "mpn-dqn" / "xla")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def cli_main(argv: list[str], batching: str) -> int:
    """Command line of tape_dqn.py / segment_dqn.py. Returns the exit status."""
    prog = "tape_dqn.py" if batching == "tape" else "segment_dqn.py"
    p = argparse.ArgumentParser(prog=prog, description=f"Double DQN with {batching}-based batching on a NeuroGym task.")
    p.add_argument("config", nargs="?", help="experiment YAML file, e.g. experiments/perceptual_decision_making/tape_mpn.yaml")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--out", help="run folder (default runs/<experiment>-<timestamp>/); must not exist or be empty")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train N independent seeds (seed, seed+1, ...): vmapped in one program on the jax backend; "
                        "one run folder per seed, <out>/seed<k>/")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the interrupted run in RUN_DIR from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    enable_compile_cache()
    stop = StopFlag()
    try:
        if args.resume:
            if args.config or args.set or args.seed is not None or args.out or args.seeds != 1:
                raise ConfigError("--resume takes no config file, --set, --seed, --seeds or --out: the run's own are used")
            top, cfg, seeds, dirs, runs, resume = _reopen(Path(args.resume), batching)
        else:
            if not args.config:
                raise ConfigError("give an experiment YAML file (or --resume RUN_DIR)")
            top, cfg, seeds, dirs, runs = _new_run(args, prog)
            resume = None
        print(f"{prog}: writing {top}/", file=sys.stderr)
        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            summaries = train(cfg, batching, runs, not args.no_progress, seeds, top, resume, stop)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except RunStopped as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.status
    for summary in summaries:
        print(
            f"{prog}: seed {summary['seed']}: final greedy performance {summary['final_eval_performance']:.3f} over "
            f"{summary['final_eval_trials']} trials after {summary['env_steps']} env steps, {summary['wall_s']:.1f} s"
        )
    for d in dirs:
        print(f"{prog}: wrote {d}/config.yaml, metrics.csv, summary.json, params.msgpack")
    return 0


def _new_run(args, prog):
    overrides = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load(args.config, overrides)
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: must be at least 1")
    top = Path(args.out) if args.out else Path("runs") / f"{cfg['name']}-{datetime.now():%Y%m%d-%H%M%S}"
    if cfg["env"]["backend"] == "neurogym":
        _make_probe_env(cfg["env"]["task"], cfg["env"]["kwargs"])
    else:
        from collector.jax_envs import make_jax_env

        _make_jax_env(make_jax_env, cfg)
    build_network(cfg, 2)
    seeds = [cfg["seed"] + i for i in range(args.seeds)]
    dirs = [top] if args.seeds == 1 else [top / f"seed{s}" for s in seeds]
    RunFolder.check(top)
    runs = [RunFolder(d, {**cfg, "seed": s}) for d, s in zip(dirs, seeds)]
    return top, cfg, seeds, dirs, runs


def _reopen(top: Path, batching: str):
    try:
        ck = checkpoint.load(top)
    except FileNotFoundError:
        raise ConfigError(f"--resume {top}: no {checkpoint.FILENAME} there") from None
    except (pickle.UnpicklingError, EOFError, OSError) as e:
        raise ConfigError(f"--resume {top}: unreadable checkpoint ({e})") from None
    if ck["batching"] != batching:
        raise ConfigError(f"--resume {top}: a {ck['batching']} run; resume it with {ck['batching']}_dqn.py")
    if ck["finished"]:
        raise ConfigError(f"--resume {top}: the run already finished")
    cfg, seeds = ck["config"], ck["seeds"]
    dirs = [top] if len(seeds) == 1 else [top / f"seed{s}" for s in seeds]
    first = ck.get("seed_index", 0)
    runs = [None] * len(seeds)
    for i in range(first, len(seeds)):
        if i == first:
            runs[i] = RunFolder.reopen(dirs[i], ck["rows"][0] if ck["backend"] == "neurogym" else ck["rows"][i])
        elif ck["backend"] == "jax":
            runs[i] = RunFolder.reopen(dirs[i], ck["rows"][i])
        else:  # a later seed of a sequential neurogym run: not started yet
            runs[i] = RunFolder.reopen(dirs[i], 0)
    return top, cfg, seeds, dirs[first:] if ck["backend"] == "neurogym" else dirs, runs, ck
