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
from flax import serialization
from tqdm import tqdm

import buffer as buf
from buffer import SegmentBuffer, TapeBuffer
from collector.host import EpisodeSpec, HostCollector, evaluate
from collector.policy import epsilon_at
from config import ConfigError, load
from losses import LossConfig, create_train_state, update
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

    def __init__(self, path: Path, cfg: dict):
        if path.exists() and any(path.iterdir()):
            raise ConfigError(f"--out {path}: folder exists and is not empty; choose another")
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


def train(cfg: dict, batching: str, run: RunFolder | None = None, progress: bool = True) -> dict:
    """Train a double DQN with tape (`batching="tape"`) or segment batching on cfg; returns the summary."""
    tr, ev = cfg["train"], cfg["eval"]
    seed = cfg["seed"]
    spec = episode_spec(cfg)
    task, task_kwargs = cfg["env"]["task"], cfg["env"]["kwargs"]
    store_state = batching == "segment" and cfg["segment"]["stored_state"]

    probe = _make_probe_env(task, task_kwargs)
    network = build_network(cfg, probe.action_space.n)
    obs_dim = int(np.prod(probe.observation_space.shape))
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    params = network.init(k_init, jnp.zeros((1, obs_dim)), jnp.ones((1,), bool))
    tx = optax.chain(optax.clip_by_global_norm(tr["grad_clip"]), optax.adam(tr["lr"]))
    loss_cfg = LossConfig(
        gamma=tr["gamma"], huber_delta=tr["huber_delta"], target_mode=tr["target_mode"],
        target_period=tr["target_period"], target_tau=tr["target_tau"],
    )
    ts = create_train_state(network, params, tx, loss_cfg)

    collector = HostCollector(task, task_kwargs, cfg["env"]["num_envs"], seed, 0, network, spec, store_state)
    state_example = network.initial_state(obs_dim) if store_state else None
    buffer_state = buf.init(tr["buffer_capacity"], obs_dim, state_example)
    add = jax.jit(buf.add)
    max_per_add = max(1, 1 << (int(tr["buffer_capacity"] // spec.max_rows).bit_length() - 1))
    train_iteration = make_train_iteration(make_sampler(cfg, batching), tr["updates_per_iter"])

    def run_eval(n_trials):
        return evaluate(network, ts.params, task, task_kwargs, spec, ev["num_envs"], seed, n_trials)

    total = tr["total_env_steps"]
    per_iter = tr["steps_per_iter"] * cfg["env"]["num_envs"]
    env_steps, updates, next_eval = 0, 0, ev["every_env_steps"]
    acc_perf, acc_loss, acc_q = [], [], []
    reached = None
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="step", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    last = dict(eval_performance=float("nan"), loss=float("nan"))
    eps = tr["eps_start"]
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
            perf = np.concatenate(acc_perf) if acc_perf else np.zeros(0)
            row = dict(
                env_steps=env_steps, updates=updates, wall_s=round(time.perf_counter() - t0, 3),
                eval_performance=result["performance"], eval_reward_per_trial=result["reward_per_trial"],
                train_performance=float(perf.mean()) if perf.size else float("nan"),
                loss=float(np.mean(acc_loss)) if acc_loss else float("nan"),
                q_mean=float(np.mean(acc_q)) if acc_q else float("nan"), epsilon=eps,
            )
            acc_perf, acc_loss, acc_q = [], [], []
            if run is not None:
                run.row(row)
            last = row
            if reached is None and ev["target"] is not None and row["eval_performance"] >= ev["target"]:
                reached = dict(env_steps=env_steps, wall_s=row["wall_s"])
        bar.set_postfix(eval=f"{last['eval_performance']:.3f}", loss=f"{last['loss']:.4f}", eps=f"{eps:.3f}", refresh=False)
    bar.close()
    wall = time.perf_counter() - t0
    final = run_eval(ev["final_trials"])
    summary = dict(
        experiment=cfg["name"], batching=batching, task=task, memory=cfg["model"]["memory"], seed=seed,
        env_steps=env_steps, updates=updates, wall_s=round(wall, 3),
        final_eval_performance=final["performance"], final_eval_reward_per_trial=final["reward_per_trial"],
        final_eval_trials=final["trials"], target=ev["target"],
        target_reached_env_steps=reached and reached["env_steps"], target_reached_wall_s=reached and reached["wall_s"],
        device=str(jax.devices()[0]), jax_version=jax.__version__,
    )
    if run is not None:
        run.finish(summary, ts.params)
    return summary


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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        overrides = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
        cfg = load(args.config, overrides)
        out = Path(args.out) if args.out else Path("runs") / f"{cfg['name']}-{datetime.now():%Y%m%d-%H%M%S}"
        _make_probe_env(cfg["env"]["task"], cfg["env"]["kwargs"])
        build_network(cfg, 2)
        run = RunFolder(out, cfg)
        print(f"{prog}: writing {out}/", file=sys.stderr)
        summary = train(cfg, batching, run, progress=not args.no_progress)
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rows written so far are in metrics.csv", file=sys.stderr)
        return 130
    print(
        f"{prog}: final greedy performance {summary['final_eval_performance']:.3f} over "
        f"{summary['final_eval_trials']} trials after {summary['env_steps']} env steps, {summary['wall_s']:.1f} s"
    )
    print(f"{prog}: wrote {out}/config.yaml, metrics.csv, summary.json, params.msgpack")
    return 0
