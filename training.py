"""The training loop shared by tape_dqn.py and segment_dqn.py, and their command line.

One iteration: collect `steps_per_iter` vector steps with the ε-greedy policy, add the episodes that
ended to the buffer, then run `updates_per_iter` jitted (sample, update) steps. Every
`eval.every_env_steps` the greedy policy is evaluated on separately seeded envs and one row is
appended (and flushed) to metrics.csv, so an interrupted run keeps every row it wrote.
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import math
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
from buffer import SegmentBuffer, TapeBuffer
from collector.host import EpisodeSpec, HostCollector, evaluate
from collector.policy import epsilon_at
from collector.jax_collector import CollectorState, JaxCollector, evaluate_jax
from config import ConfigError, load
from losses import LossConfig, TrainState, create_train_state, update
from memory import QNetwork, make_memory

METRICS = [
    "env_steps", "updates", "wall_s", "eval_performance", "eval_reward_per_trial",
    "train_performance", "loss", "q_mean", "epsilon",
]


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


def make_train_iteration(sample, num_updates: int):
    """jit(train_state, buffer_state, key) -> (train_state, mean metrics) running num_updates
    (sample, update) steps in one lax.scan."""

    @jax.jit
    def train_iteration(ts, buffer_state, key):
        def step(ts, key):
            k_sample, k_update = jax.random.split(key)
            return update(ts, sample(buffer_state, k_sample), k_update)

        ts, metrics = jax.lax.scan(step, ts, jax.random.split(key, num_updates))
        return ts, jax.tree.map(jnp.mean, metrics)

    return train_iteration


def _add_in_chunks(add, state, eps, max_per_add: int):
    """Add an Episodes batch in pieces small enough that one add never wraps onto itself."""
    e = eps.action.shape[0]
    if e <= max_per_add:
        return add(state, eps)
    for i in range(0, e, max_per_add):
        state = add(state, jax.tree.map(lambda x: x[i : i + max_per_add], eps))
    return state


class RunFolder:
    """The run's output folder: config.yaml, metrics.csv (appended and flushed row by row),
    summary.json and params.msgpack. Never reuses a non-empty folder."""

    @staticmethod
    def check(path: Path) -> None:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"--out {path}: exists and is not an empty folder; choose another")

    def __init__(self, path: Path, cfg: dict):
        self.check(path)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        self._file = open(path / "metrics.csv", "w", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=METRICS)
        self._csv.writeheader()
        self._file.flush()

    def row(self, row: dict) -> None:
        self._csv.writerow({k: row.get(k, "") for k in METRICS})
        self._file.flush()

    def finish(self, summary: dict, params) -> None:
        self._file.close()
        (self.path / "params.msgpack").write_bytes(serialization.to_bytes(params))
        (self.path / "summary.json").write_text(json.dumps(summary, indent=2))


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


class Tracker:
    """One seed's bookkeeping: metrics.csv rows, the steps and seconds to the target, the summary."""

    def __init__(self, cfg: dict, batching: str, seed: int, run: RunFolder | None):
        self.cfg, self.batching, self.seed, self.run = cfg, batching, seed, run
        self.last = dict(eval_performance=float("nan"), loss=float("nan"))
        self.reached = None

    def row(self, **row) -> dict:
        row = {k: _plain(v) for k, v in row.items()}
        if self.run is not None:
            self.run.row(row)
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
            wall_s=round(wall, 3), final_eval_performance=float(final["performance"]),
            final_eval_reward_per_trial=float(final["reward_per_trial"]), final_eval_trials=int(final["trials"]),
            target=cfg["eval"]["target"],
            target_reached_env_steps=self.reached and self.reached["env_steps"],
            target_reached_wall_s=self.reached and self.reached["wall_s"],
            device=str(jax.devices()[0]), jax_version=jax.__version__,
        )
        if self.run is not None:
            self.run.finish(summary, params)
        return summary


def _plain(v):
    """A JSON/CSV-friendly Python number (float32 results rounded to the digits they carry)."""
    if isinstance(v, (np.ndarray, jax.Array, np.generic)):
        v = np.asarray(v).item()
        if isinstance(v, float):
            return float(f"{v:.6g}")
    return v


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def train(cfg: dict, batching: str, runs=None, progress: bool = True, seeds=None) -> list[dict]:
    """Train a double DQN with tape (`batching="tape"`) or segment batching on cfg, once per seed
    (default: cfg["seed"]); runs: one RunFolder (or None) per seed. Returns one summary per seed."""
    seeds = list(seeds or [cfg["seed"]])
    runs = list(runs or [None] * len(seeds))
    if cfg["env"]["backend"] == "jax":
        return _train_jax(cfg, batching, seeds, runs, progress)
    return [_train_host(cfg, batching, seed, run, progress) for seed, run in zip(seeds, runs)]


def _train_host(cfg: dict, batching: str, seed: int, run, progress: bool) -> dict:
    """The neurogym backend: envs stepped in Python, jitted policy step and jitted updates."""
    tr, ev = cfg["train"], cfg["eval"]
    spec = episode_spec(cfg)
    task, task_kwargs = cfg["env"]["task"], cfg["env"]["kwargs"]
    store_state = batching == "segment" and cfg["segment"]["stored_state"]

    probe = _make_probe_env(task, task_kwargs)
    network = build_network(cfg, probe.action_space.n)
    obs_dim = int(np.prod(probe.observation_space.shape))
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    ts = make_train_state(cfg, network, obs_dim, k_init)

    collector = HostCollector(task, task_kwargs, cfg["env"]["num_envs"], seed, 0, network, spec, store_state)
    state_example = network.initial_state(obs_dim) if store_state else None
    buffer_state = buf.init(tr["buffer_capacity"], obs_dim, state_example)
    add = jax.jit(buf.add)
    max_per_add = max(1, 1 << (int(tr["buffer_capacity"] // spec.max_rows).bit_length() - 1))
    train_iteration = make_train_iteration(make_sampler(cfg, batching), tr["updates_per_iter"])

    def run_eval(n_trials):
        return evaluate(network, ts.params, task, task_kwargs, spec, ev["num_envs"], seed, n_trials)

    tracker = Tracker(cfg, batching, seed, run)
    total = tr["total_env_steps"]
    per_iter = tr["steps_per_iter"] * cfg["env"]["num_envs"]
    env_steps, updates, next_eval = 0, 0, ev["every_env_steps"]
    acc_perf, acc_loss, acc_q = [], [], []
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="step", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    while env_steps < total:
        eps = float(epsilon_at(env_steps, tr["eps_start"], tr["eps_end"], tr["eps_decay_steps"]))
        key, k_col, k_train = jax.random.split(key, 3)
        episodes, stats = collector.run(ts.params, tr["steps_per_iter"], eps, k_col)
        if episodes is not None:
            buffer_state = _add_in_chunks(add, buffer_state, episodes, max_per_add)
        env_steps += per_iter
        acc_perf.append(stats.performance)
        if env_steps >= tr["learning_starts"] and int(buf.num_transitions(buffer_state)) > 0:
            ts, m = train_iteration(ts, buffer_state, k_train)
            updates += tr["updates_per_iter"]
            acc_loss.append(float(m["loss"]))
            acc_q.append(float(m["q_mean"]))
        bar.update(per_iter)
        if env_steps >= next_eval or env_steps >= total:
            next_eval += ev["every_env_steps"]
            result = run_eval(ev["trials"])
            tracker.row(
                env_steps=env_steps, updates=updates, wall_s=round(time.perf_counter() - t0, 3),
                eval_performance=result["performance"], eval_reward_per_trial=result["reward_per_trial"],
                train_performance=_mean(np.concatenate(acc_perf)), loss=_mean(acc_loss), q_mean=_mean(acc_q),
                epsilon=eps,
            )
            acc_perf, acc_loss, acc_q = [], [], []
        _postfix(bar, tracker.last, eps)
    bar.close()
    wall = time.perf_counter() - t0
    return tracker.finish(run_eval(ev["final_trials"]), env_steps, updates, wall, ts.params)


def _postfix(bar, last: dict, eps: float) -> None:
    bar.set_postfix(eval=f"{last['eval_performance']:.3f}", loss=f"{last['loss']:.4f}", eps=f"{eps:.3f}", refresh=False)


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


def _train_jax(cfg: dict, batching: str, seeds: list[int], runs: list, progress: bool) -> list[dict]:
    """The jax backend: collection, buffer and updates of one iteration in one jitted function,
    run for a whole evaluation interval inside jit, vmapped over seeds."""
    from collector.jax_envs import make_jax_env

    tr, ev = cfg["train"], cfg["eval"]
    spec = episode_spec(cfg)
    env, env_params = _make_jax_env(make_jax_env, cfg)
    network = build_network(cfg, env.num_actions)
    obs_dim = env.obs_dim
    store_state = batching == "segment" and cfg["segment"]["stored_state"]
    num_envs = cfg["env"]["num_envs"]
    collector = JaxCollector(env, env_params, network, spec, num_envs, tr["steps_per_iter"], store_state)
    sample = make_sampler(cfg, batching)
    per_iter = tr["steps_per_iter"] * num_envs
    state_example = network.initial_state(obs_dim) if store_state else None
    max_rows = collector.max_rows_per_call()
    if max_rows > tr["buffer_capacity"]:
        raise ConfigError(
            f"train.buffer_capacity: {tr['buffer_capacity']} rows cannot take one iteration's "
            f"{max_rows} rows (env.num_envs x (train.steps_per_iter + episodes per iteration))"
        )

    def init(seed):
        key = jax.random.PRNGKey(seed)
        key, k_init, k_col = jax.random.split(key, 3)
        zi, zf = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        return Carry(
            ts=make_train_state(cfg, network, obs_dim, k_init),
            buffer=buf.init(tr["buffer_capacity"], obs_dim, state_example),
            collector=collector.init(k_col), key=key, eval_key=jax.random.fold_in(jax.random.PRNGKey(seed), 1),
            env_steps=zi, updates=zi, trials=zi, correct=zf, loss_sum=zf, q_sum=zf, train_iters=zi,
        )

    def iteration(c: Carry) -> Carry:
        eps = epsilon_at(c.env_steps, tr["eps_start"], tr["eps_end"], tr["eps_decay_steps"])
        key, k_col, k_train = jax.random.split(c.key, 3)
        cs, episodes, stats = collector.collect(c.ts.params, c.collector, eps, k_col)
        bs = buf.add(c.buffer, episodes, max_rows=max_rows)
        env_steps = c.env_steps + per_iter
        learn = env_steps >= tr["learning_starts"]

        def updates(ts):
            def step(ts, k):
                k_sample, k_update = jax.random.split(k)
                return update(ts, sample(bs, k_sample), k_update)

            ts, m = jax.lax.scan(step, ts, jax.random.split(k_train, tr["updates_per_iter"]))
            return ts, (m["loss"].mean(), m["q_mean"].mean())

        def no_updates(ts):
            return ts, (jnp.zeros(()), jnp.zeros(()))

        ts, (loss, q) = jax.lax.cond(learn, updates, no_updates, c.ts)
        return c.replace(
            ts=ts, buffer=bs, collector=cs, key=key, env_steps=env_steps,
            updates=c.updates + learn * tr["updates_per_iter"], trials=c.trials + stats.trials,
            correct=c.correct + stats.correct, loss_sum=c.loss_sum + loss, q_sum=c.q_sum + q,
            train_iters=c.train_iters + learn,
        )

    def evaluate_params(params, key, n_trials):
        return evaluate_jax(env, env_params, network, spec, params, key, ev["num_envs"], n_trials)

    def chunk(c: Carry, n_iters):
        c = jax.lax.fori_loop(0, n_iters, lambda _, c: iteration(c), c)  # n_iters traced: one compile
        result = evaluate_params(c.ts.params, c.eval_key, ev["trials"])
        eps = epsilon_at(c.env_steps - per_iter, tr["eps_start"], tr["eps_end"], tr["eps_decay_steps"])
        n_it = jnp.maximum(c.train_iters, 1)
        row = dict(
            env_steps=c.env_steps, updates=c.updates, eval_performance=result["performance"],
            eval_reward_per_trial=result["reward_per_trial"],
            train_performance=jnp.where(c.trials > 0, c.correct / jnp.maximum(c.trials, 1), jnp.nan),
            loss=jnp.where(c.train_iters > 0, c.loss_sum / n_it, jnp.nan),
            q_mean=jnp.where(c.train_iters > 0, c.q_sum / n_it, jnp.nan), epsilon=eps,
        )
        zi, zf = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        return c.replace(trials=zi, correct=zf, loss_sum=zf, q_sum=zf, train_iters=zi), row

    run_chunk = jax.jit(jax.vmap(chunk, in_axes=(0, None)))
    final_eval = jax.jit(jax.vmap(evaluate_params, in_axes=(0, 0, None)), static_argnums=2)

    total_iters = -(-tr["total_env_steps"] // per_iter)
    iters_per_row = max(1, -(-ev["every_env_steps"] // per_iter))
    trackers = [Tracker(cfg, batching, s, r) for s, r in zip(seeds, runs)]
    t0 = time.perf_counter()
    carry = jax.jit(jax.vmap(init))(jnp.asarray(seeds, jnp.uint32))
    bar = tqdm(total=total_iters * per_iter, unit="step", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    done = 0
    while done < total_iters:
        n = min(iters_per_row, total_iters - done)
        carry, rows = run_chunk(carry, jnp.int32(n))
        rows = jax.device_get(rows)
        done += n
        wall = round(time.perf_counter() - t0, 3)
        for i, tracker in enumerate(trackers):
            tracker.row(wall_s=wall, **{k: v[i] for k, v in rows.items()})
        bar.update(n * per_iter)
        _postfix(bar, trackers[0].last, float(rows["epsilon"][0]))
    bar.close()
    wall = time.perf_counter() - t0
    final = jax.device_get(final_eval(carry.ts.params, carry.eval_key, ev["final_trials"]))
    out = []
    for i, tracker in enumerate(trackers):
        params_i = jax.tree.map(lambda x: np.asarray(x[i]), carry.ts.params)
        out.append(tracker.finish(
            {k: _plain(v[i]) for k, v in final.items()}, int(carry.env_steps[i]), int(carry.updates[i]), wall, params_i
        ))
    return out


def _make_jax_env(make_jax_env, cfg):
    try:
        return make_jax_env(cfg["env"]["task"], **cfg["env"]["kwargs"])
    except ValueError as e:
        raise ConfigError(f"env: {e}") from None


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


def cli_main(argv: list[str], batching: str) -> int:
    """Command line of tape_dqn.py / segment_dqn.py. Returns the exit status."""
    prog = "tape_dqn.py" if batching == "tape" else "segment_dqn.py"
    p = argparse.ArgumentParser(prog=prog, description=f"Double DQN with {batching}-based batching on a NeuroGym task.")
    p.add_argument("config", help="experiment YAML file, e.g. experiments/perceptual_decision_making/tape_mpn.yaml")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--out", help="run folder (default runs/<experiment>-<timestamp>/); must not exist or be empty")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train N independent seeds (seed, seed+1, ...): vmapped in one program on the jax backend; "
                        "one run folder per seed, <out>/seed<k>/")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        overrides = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
        cfg = load(args.config, overrides)
        if args.seeds < 1:
            raise ConfigError(f"--seeds {args.seeds}: must be at least 1")
        out = Path(args.out) if args.out else Path("runs") / f"{cfg['name']}-{datetime.now():%Y%m%d-%H%M%S}"
        if cfg["env"]["backend"] == "neurogym":
            _make_probe_env(cfg["env"]["task"], cfg["env"]["kwargs"])
        else:
            from collector.jax_envs import make_jax_env

            _make_jax_env(make_jax_env, cfg)
        build_network(cfg, 2)
        seeds = [cfg["seed"] + i for i in range(args.seeds)]
        dirs = [out] if args.seeds == 1 else [out / f"seed{s}" for s in seeds]
        for d in dirs:
            RunFolder.check(d)
        runs = [RunFolder(d, {**cfg, "seed": s}) for d, s in zip(dirs, seeds)]
        print(f"{prog}: writing {out}/", file=sys.stderr)
        summaries = train(cfg, batching, runs, progress=not args.no_progress, seeds=seeds)
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rows written so far are in metrics.csv", file=sys.stderr)
        return 130
    for d, summary in zip(dirs, summaries):
        print(
            f"{prog}: seed {summary['seed']}: final greedy performance {summary['final_eval_performance']:.3f} over "
            f"{summary['final_eval_trials']} trials after {summary['env_steps']} env steps, {summary['wall_s']:.1f} s"
        )
        print(f"{prog}: wrote {d}/config.yaml, metrics.csv, summary.json, params.msgpack")
    return 0
