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
import contextlib
import csv
import fcntl
import functools
import io
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
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
        return functools.partial(TapeBuffer.sample, tape_size=t["size"], max_episodes=t["max_episodes"], lanes=t["lanes"])
    s = cfg["segment"]
    return functools.partial(
        SegmentBuffer.sample, batch_size=s["batch_size"], length=s["length"], burn_in=s["burn_in"],
        stride=s["stride"], stored_state=s["stored_state"],
    )


def learning_rate(cfg: dict):
    """train.lr, or (train.lr_end set) train.lr held for the first train.lr_decay_start of the run's
    updates, then a linear decay to train.lr_end at the last update."""
    tr = cfg["train"]
    if tr["lr_end"] is None:
        return tr["lr"]
    per_iter = tr["steps_per_iter"] * cfg["env"]["num_envs"]
    iters = -(-max(tr["total_env_steps"] - tr["learning_starts"], 0) // per_iter)
    total = max(1, iters * tr["updates_per_iter"])
    hold = int(tr["lr_decay_start"] * total)
    return optax.linear_schedule(tr["lr"], tr["lr_end"], max(1, total - hold), transition_begin=hold)


def make_train_state(cfg: dict, network, obs_dim: int, key):
    """Fresh parameters, optimiser state and target network for one seed."""
    tr = cfg["train"]
    params = network.init(key, jnp.zeros((1, obs_dim)), jnp.ones((1,), bool))
    tx = optax.chain(optax.clip_by_global_norm(tr["grad_clip"]), optax.adam(learning_rate(cfg)))
    loss_cfg = LossConfig(
        gamma=tr["gamma"], huber_delta=tr["huber_delta"], target_mode=tr["target_mode"],
        target_period=tr["target_period"], target_tau=tr["target_tau"], n_step=tr["n_step"],
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


def _state_bytes(network, obs_dim: int) -> int:
    """Bytes of one env's memory state (M for the MPN, h for the GRU)."""
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(network.initial_state(obs_dim)))


def check_resources(cfg: dict, batching: str, network, obs_dim: int, num_actions: int, n_seeds: int) -> None:
    """Refuse at once, before any folder is made, a run whose arrays cannot fit in this machine's
    RAM: the replay buffer, the recording slots of the training and evaluation envs and the
    activations of one update, per seed trained side by side. The message names the key of the
    largest part and quotes the figures."""
    import psutil

    tr, ev, ep = cfg["train"], cfg["eval"], cfg["episode"]
    state = _state_bytes(network, obs_dim)
    rows = ep["max_steps"] + 1
    store_state = batching == "segment" and cfg["segment"]["stored_state"]
    record_row = 4 * obs_dim + 9 + (state if store_state else 0)
    hidden = cfg["model"]["memory_kwargs"].get("hidden", 64)
    if batching == "tape":
        batch_rows, batch_key = cfg["tape"]["size"], "tape.size"
    else:
        s = cfg["segment"]
        batch_rows, batch_key = s["batch_size"] * (s["burn_in"] + s["length"] + 1), "segment.batch_size"
    # per batch row: the memory state kept for the backward pass, the layer activations and the
    # Q-values, for the online network (with gradients) and the target network
    act_row = state + 4 * (obs_dim + 4 * hidden + 4 * sum(cfg["model"]["head"]) + 2 * num_actions)
    parts = {
        "train.buffer_capacity": buf.bytes_needed(tr["buffer_capacity"], obs_dim, None) + (tr["buffer_capacity"] * state if store_state else 0),
        # per env: its recording slots, and the working set of one policy step (measured: about a
        # dozen copies of the memory state, e.g. W * (1 + M) and its gradient-free temporaries)
        "env.num_envs": cfg["env"]["num_envs"] * (2 * rows * record_row + 12 * state),
        "eval.num_envs": ev["num_envs"] * (rows * (4 * obs_dim + 9) + 12 * state),
        batch_key: 3 * batch_rows * act_row,
    }
    seeds_at_once = n_seeds if cfg["env"]["backend"] == "jax" else 1
    need = seeds_at_once * sum(parts.values())
    avail = psutil.virtual_memory().available
    if need > 0.9 * avail:
        key = max(parts, key=parts.get)
        detail = ", ".join(f"{k} {v * seeds_at_once / 2**30:.2f}" for k, v in parts.items())
        raise ConfigError(
            f"{key}: the run needs about {need / 2**30:.2f} GiB ({detail} GiB"
            f"{f', for {seeds_at_once} seeds' if seeds_at_once > 1 else ''}) but only {avail / 2**30:.2f} GiB of memory is available"
        )


def check_iteration_fits(cfg: dict, max_rows: int) -> None:
    """The jax backend adds one iteration's rows to the ring in one piece: they must fit in it."""
    cap = cfg["train"]["buffer_capacity"]
    if max_rows > cap:
        raise ConfigError(
            f"train.buffer_capacity: {cap} rows cannot take one iteration's "
            f"{max_rows} rows (env.num_envs x (train.steps_per_iter + episodes per iteration))"
        )


def check_trials(cfg: dict, env_info: dict) -> None:
    """Refuse timings under which no trial can be learnt: trials of no step at all (every period
    collapsed to nothing, e.g. env.kwargs.dt far above the periods) or trials longer than an
    episode (no trial would ever end inside one, e.g. a tiny env.kwargs.dt). env_info['trial_steps']:
    the lengths of a few sampled trials (None where the task has no fixed trials to sample)."""
    lengths = env_info.get("trial_steps")
    if not lengths:
        return
    kw = cfg["env"]["kwargs"]
    knob = "env.kwargs.dt" if "dt" in kw else "env.kwargs.timing" if "timing" in kw else "env.task"
    shortest, max_steps = min(lengths), cfg["episode"]["max_steps"]
    if shortest < 1:
        raise ConfigError(f"{knob}: with these settings a trial of {cfg['env']['task']} lasts no step at all: its periods vanish (dt is longer than them)")
    if shortest > max_steps:
        raise ConfigError(
            f"{knob}: with these settings a trial of {cfg['env']['task']} lasts at least {shortest} steps, more than "
            f"episode.max_steps ({max_steps}): no trial could end inside an episode"
        )


# ---- run folders and bookkeeping -----------------------------------------------------------


RUN_FILE = "run.json"  # the run program's identity: run id, batching, backend, seeds
LOCK_FILE = ".lock"  # held (flock) by the process that runs or resumes the folder


def _write_error(path, e: OSError) -> RunStopped:
    return RunStopped(f"cannot write {path}: {e.strerror or e}", 2)


class RunLock:
    """An exclusive lock on a run folder for as long as this process runs it, so that two
    processes never train into (or resume) the same folder at once. flock is released by the
    kernel when the process ends, however it ends (kill -9 included)."""

    def __init__(self, top: Path):
        self.path = top / LOCK_FILE
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"{top}: cannot open its lock file: {e.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise ConfigError(f"{top}: another process (pid {other}) is running this run now; wait for it or stop it first") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        os.close(self.fd)


def _make_folder(path: Path, flag: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot create the run folder: {e.strerror or e}") from None


class RunFolder:
    """The run's output folder: config.yaml, metrics.csv (appended and flushed row by row),
    summary.json and params.msgpack. A new run never reuses a non-empty folder; `reopen` continues
    a checkpointed one, first cutting metrics.csv back to the rows the checkpoint had seen."""

    @staticmethod
    def check(path: Path) -> None:
        try:
            taken = path.exists() and (not path.is_dir() or any(path.iterdir()))
        except OSError as e:
            raise ConfigError(f"--out {path}: cannot use it: {e.strerror or e}") from None
        if taken:
            raise ConfigError(f"--out {path}: exists and is not an empty folder; choose another")

    def __init__(self, path: Path, cfg: dict | None, rows: int | None = None, last: dict | None = None):
        self.path = path
        csv_path = path / "metrics.csv"
        if rows is None:
            _make_folder(path, "--out")
            try:
                (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
                self._file = open(csv_path, "w", newline="")
            except OSError as e:
                raise ConfigError(f"--out {path}: cannot write the run folder: {e.strerror or e}") from None
            self._csv = csv.DictWriter(self._file, fieldnames=METRICS, lineterminator="\n")
            self._csv.writeheader()
        else:
            kept = self._kept_lines(csv_path, rows, last)
            csv_path.write_bytes(b"".join(kept))
            self._file = open(csv_path, "a", newline="")
            self._csv = csv.DictWriter(self._file, fieldnames=METRICS, lineterminator="\n")
        self._file.flush()

    @staticmethod
    def _kept_lines(csv_path: Path, rows: int, last: dict | None) -> list[bytes]:
        """The header and the first `rows` rows of metrics.csv, each checked to be whole. The last
        of them may have been cut short by a crash before it reached the disk: it is written again
        from the checkpoint's copy of that row. Anything after them is dropped."""
        where = f"--resume {csv_path.parent}"
        try:
            lines = csv_path.read_bytes().splitlines(keepends=True)
        except FileNotFoundError:
            raise ConfigError(f"{where}: metrics.csv is missing; this run cannot be continued") from None
        header = ",".join(METRICS).encode() + b"\n"
        if not lines or lines[0] != header:
            raise ConfigError(f"{where}: metrics.csv does not start with this program's header")
        if len(lines) < rows + 1:
            raise ConfigError(f"{where}: metrics.csv has {len(lines) - 1} rows, the checkpoint expects {rows}")
        kept = lines[: rows + 1]
        for i, line in enumerate(kept[1:], start=1):
            whole = line.endswith(b"\n") and len(next(csv.reader([line.decode(errors="replace")]))) == len(METRICS)
            if whole:
                continue
            if i == rows and last:
                buf_ = io.StringIO()
                csv.DictWriter(buf_, fieldnames=METRICS, lineterminator="\n").writerow({k: last.get(k, "") for k in METRICS})
                kept[i] = buf_.getvalue().encode()
            else:
                raise ConfigError(f"{where}: metrics.csv row {i} is damaged; this run cannot be continued")
        return kept

    @classmethod
    def reopen(cls, path: Path, rows: int, last: dict | None = None) -> "RunFolder":
        return cls(path, None, rows, last)

    def row(self, row: dict) -> None:
        try:
            self._csv.writerow({k: row.get(k, "") for k in METRICS})
            self._file.flush()
        except OSError as e:
            raise _write_error(self.path / "metrics.csv", e) from None

    def sync(self) -> None:
        """Put the rows written so far on disk (before a checkpoint that counts them)."""
        if self._file.closed:  # finished: finish() synced before closing
            return
        try:
            os.fsync(self._file.fileno())
        except OSError as e:
            raise _write_error(self.path / "metrics.csv", e) from None

    def finish(self, summary: dict, params) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            _atomic_write(self.path / "params.msgpack", serialization.to_bytes(params))
            _atomic_write(self.path / "summary.json", json.dumps(summary, indent=2).encode())
        except OSError as e:
            raise _write_error(self.path, e) from None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


class Checkpointer:
    """Writes one run program's checkpoints into its top folder: first puts the metrics rows they
    count on disk, stamps the run id, and turns a failed write (full disk, folder gone) into one
    line; the previous checkpoint then stays whole."""

    def __init__(self, top: Path, run_id: str, runs):
        self.top, self.run_id, self.runs = Path(top), run_id, runs

    def save(self, data: dict) -> None:
        for r in self.runs:
            if r is not None:
                r.sync()
        try:
            checkpoint.save(self.top, dict(data, run_id=self.run_id))
        except OSError as e:
            raise RunStopped(f"cannot write the checkpoint in {self.top}: {e.strerror or e}; the previous one is kept", 2) from None

    def __str__(self) -> str:
        return str(self.top)


def _restored(what: str, fn):
    """fn() restoring part of a checkpoint; any mismatch becomes one CheckpointError line."""
    try:
        return fn()
    except checkpoint.CheckpointError:
        raise
    except Exception as e:  # a foreign or damaged checkpoint can fail in many ways
        raise checkpoint.CheckpointError(f"the checkpoint's {what} does not fit this run ({type(e).__name__}: {str(e)[:120]})") from None


def _non_finite(seed: int, update_index: int, ckpt_dir) -> RunStopped:
    where = f"; the last good checkpoint is {Path(str(ckpt_dir)) / checkpoint.FILENAME}" if ckpt_dir else ""
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
    key, k_init = jax.random.split(jax.random.PRNGKey(seed))
    ts = make_train_state(cfg, network, obs_dim, k_init)
    buffer_state = buf.init(tr["buffer_capacity"], obs_dim, state_example)
    add = jax.jit(buf.add)
    max_per_add = max(1, 1 << (int(tr["buffer_capacity"] // spec.max_rows).bit_length() - 1))
    train_iteration = make_train_iteration(make_sampler(cfg, batching), tr["updates_per_iter"])

    collector = HostCollector(task, task_kwargs, cfg["env"]["num_envs"], seed, 0, network, spec, store_state)
    if resume is None:
        loop = dict(env_steps=0, updates=0, next_eval=ev["every_env_steps"], acc_perf=[], acc_loss=[], acc_q=[],
                    elapsed=0.0, last_ckpt_updates=0)
        tracker = Tracker(cfg, batching, seed, run)
    else:
        _restored("envs", lambda: collector.load_state_dict(resume["collector"]))
        ts = checkpoint.from_plain(ts, resume["ts"], "train state")
        buffer_state = checkpoint.from_plain(buffer_state, resume["buffer"], "replay buffer")
        key = _restored("PRNG key", lambda: jnp.asarray(np.asarray(resume["key"], np.uint32).reshape(2)))
        loop = _restored("counters", lambda: dict(resume["loop"], env_steps=int(resume["loop"]["env_steps"])))
        tracker = _restored("metrics bookkeeping", lambda: Tracker(cfg, batching, seed, run, resume["trackers"][0]))

    def save(finished=False):
        if ckpt_dir is None:
            return
        loop["last_ckpt_updates"] = loop["updates"]
        ckpt_dir.save(dict(
            backend="neurogym", batching=batching, config=cfg, seeds=seeds, seed_index=index, finished=finished,
            ts=checkpoint.to_plain(ts), buffer=checkpoint.to_plain(buffer_state), key=np.asarray(key),
            collector=collector.state_dict(), loop=dict(loop, elapsed=time.perf_counter() - t0),
            trackers=[tracker.saved()], rows=[tracker.rows],
        ))

    def run_eval(n_trials):
        return evaluate(network, ts.params, task, task_kwargs, spec, ev["num_envs"], seed, n_trials)

    total = tr["total_env_steps"]
    per_iter = tr["steps_per_iter"] * cfg["env"]["num_envs"]
    t0 = time.perf_counter() - loop["elapsed"]
    bar = tqdm(total=total, initial=loop["env_steps"], unit="step", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    eps = tr["eps_start"]
    if resume is None:
        save()  # from here on the folder can always be resumed, whatever stops the process
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
    if stop.signum is not None:  # a signal during the last iteration: the final evaluation waits for --resume
        save()
        raise _interrupted(stop, loop["env_steps"], ckpt_dir)
    wall = time.perf_counter() - t0
    summary = tracker.finish(run_eval(ev["final_trials"]), loop["env_steps"], loop["updates"], wall, ts.params)
    if index == len(seeds) - 1:
        save(finished=True)
    elif ckpt_dir is not None:  # this seed is done: a resume starts the next one afresh
        ckpt_dir.save(dict(backend="neurogym", batching=batching, config=cfg, seeds=seeds,
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
    check_iteration_fits(cfg, max_rows)

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
        carry = checkpoint.from_plain(carry, resume["carry"], "training state")
        done, last_ckpt, elapsed, saved = _restored("counters", lambda: (
            int(resume["done"]), int(resume["done"]), float(resume["elapsed"]), list(resume["trackers"])))
        if len(saved) != len(seeds):
            raise checkpoint.CheckpointError(f"the checkpoint holds {len(saved)} seeds' bookkeeping, expected {len(seeds)}")
    trackers = _restored("metrics bookkeeping", lambda: [
        Tracker(cfg, batching, s, r, sv, seeds_in_program=len(seeds)) for s, r, sv in zip(seeds, runs, saved)])
    t0 = time.perf_counter() - elapsed

    def save(finished=False):
        if ckpt_dir is not None:
            ckpt_dir.save(dict(
                backend="jax", batching=batching, config=cfg, seeds=seeds, finished=finished,
                carry=checkpoint.to_plain(carry), done=done, elapsed=time.perf_counter() - t0,
                trackers=[t.saved() for t in trackers], rows=[t.rows for t in trackers],
            ))

    bar = tqdm(total=total_iters * per_iter, initial=done * per_iter, unit="step", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    if resume is None:
        save()  # from here on the folder can always be resumed, whatever stops the process
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
    if stop.signum is not None:  # a signal during the last block: the final evaluation waits for --resume
        save()
        raise _interrupted(stop, done * per_iter, ckpt_dir)
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
        raise ConfigError(f"env.kwargs: {_one_line(e)}") from None


def _make_probe_env(task, task_kwargs):
    from collector.ngym_compat import make_env

    try:
        env = make_env(task, **task_kwargs)
    except ValueError as e:
        raise ConfigError(f"env: {_one_line(e)}") from None
    except Exception as e:  # neurogym validates little: a bad kwarg fails anywhere in its constructor
        raise ConfigError(f"env.kwargs: {task} rejects them: {type(e).__name__}: {_one_line(e)}") from None
    if not hasattr(env.action_space, "n"):
        raise ConfigError(f"env.task: {task} does not have discrete actions")
    return env


def _one_line(e: Exception) -> str:
    """An exception's first line, cut short for a one-line error."""
    from config import short

    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return short(text, 200).strip("'\"")


def probe_env(cfg: dict, n_trials: int = 8) -> dict:
    """The task's shapes and a few trial lengths under the run's settings, from the backend's own
    env: dict(obs_dim, num_actions, trial_steps). A trial longer than an episode is reported as
    episode.max_steps + 1 (the probe stops there)."""
    task, kw, cap = cfg["env"]["task"], cfg["env"]["kwargs"], cfg["episode"]["max_steps"] + 1
    if cfg["env"]["backend"] == "jax":
        from collector.jax_envs import make_jax_env

        env, params = _make_jax_env(make_jax_env, cfg)
        try:
            keys = jax.random.split(jax.random.PRNGKey(0), n_trials)
            states = jax.vmap(lambda k: env.reset(k, params)[1])(keys)
            steps = [min(int(x), cap) for x in np.asarray(jax.vmap(env.trial_length)(states))]
        except Exception as e:
            raise ConfigError(f"env.kwargs: {task} fails with them: {type(e).__name__}: {_one_line(e)}") from None
        return dict(obs_dim=env.obs_dim, num_actions=env.num_actions, trial_steps=steps, env=env, env_params=params)
    env = _make_probe_env(task, kw)
    steps = []
    try:
        env.unwrapped.seed(0)
        env.reset()
        count, total = 0, 0
        while len(steps) < n_trials + 1 and total < cap * (n_trials + 1):
            info = env.step(0)[4]
            count, total = count + 1, total + 1
            if info.get("new_trial", False):
                steps.append(count)
                count = 0
        if len(steps) < n_trials + 1 and count >= cap:
            steps.append(count)
    except Exception as e:
        raise ConfigError(f"env.kwargs: {task} fails with them: {type(e).__name__}: {_one_line(e)}") from None
    obs_dim = int(np.prod(env.observation_space.shape))
    return dict(obs_dim=obs_dim, num_actions=int(env.action_space.n), trial_steps=[min(x, cap) for x in steps[1:] or steps])


def check_network(network, obs_dim: int) -> None:
    """Build the network once on abstract inputs: a memory setting it cannot be built with (e.g. a
    size of zero) is refused as a config error instead of failing inside the first update."""
    try:
        jax.eval_shape(network.init, jax.random.PRNGKey(0), jnp.zeros((1, obs_dim)), jnp.ones((1,), bool))
    except Exception as e:
        raise ConfigError(f"model.memory_kwargs: the network cannot be built with them: {type(e).__name__}: {_one_line(e)}") from None


# ---- command line --------------------------------------------------------------------------


def enable_compile_cache() -> None:
    """Keep compiled XLA programs on disk (JAX_COMPILATION_CACHE_DIR, default
    ~/.cache/mpn-dqn/xla) so that a second run of the same experiment skips most compilation.
    A cache folder that cannot be made is skipped with a warning (the run just compiles)."""
    path = Path(os.environ.get("JAX_COMPILATION_CACHE_DIR") or Path.home() / ".cache" / "mpn-dqn" / "xla")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        print(f"warning: compile cache {path} unusable ({e.strerror or e}); compiling without it", file=sys.stderr)
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    # programs that compile faster than this are not worth a disk write; the variable lets the
    # tests share even the small ones between processes
    text = os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1.0")
    try:
        min_secs = float(text)
    except ValueError:
        print(f"warning: JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS={text!r} is not a number; using 1.0", file=sys.stderr)
        min_secs = 1.0
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_secs)


@dataclass
class Session:
    """One invocation's run program: its folders, config, seeds and (on --resume) checkpoint."""

    top: Path
    cfg: dict
    seeds: list
    dirs: list
    runs: list
    resume: dict | None
    lock: RunLock
    run_id: str
    created_top: bool = False  # a new run whose top folder this process made
    new: bool = True


def cli_main(argv: list[str], batching: str, pending: list | None = None) -> int:
    """Command line of tape_dqn.py / segment_dqn.py. Returns the exit status.

    SIGINT/SIGTERM are caught from the first moment (`pending`: signals the script noted while it
    imported): before training starts they stop the setup (and remove the folder a new run made);
    during training the run checkpoints and stops."""
    prog = "tape_dqn.py" if batching == "tape" else "segment_dqn.py"
    stop = StopFlag()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    if pending:
        stop.signum = pending[0]
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"{prog}: {signal.Signals(stop.signum).name} before the run started; nothing was written", file=sys.stderr)
        return 128 + stop.signum
    session = None
    try:
        args = _parser(prog, batching).parse_args(argv)
        enable_compile_cache()
        if args.resume:
            if args.config or args.set or args.seed is not None or args.out or args.seeds != 1:
                raise ConfigError("--resume takes no config file, --set, --seed, --seeds or --out: the run's own are used")
            session = _reopen(Path(args.resume), batching)
        else:
            if not args.config:
                raise ConfigError("give an experiment YAML file (or --resume RUN_DIR)")
            session = _new_run(args, prog, batching)
        if stop.signum is not None:  # during the set-up: _discard removes what a new run made
            raise RunStopped(f"{signal.Signals(stop.signum).name} before training started; nothing was written",
                             128 + stop.signum)
        print(f"{prog}: writing {session.top}/", file=sys.stderr)
        ckpt = Checkpointer(session.top, session.run_id, session.runs)
        summaries = train(session.cfg, batching, session.runs, not args.no_progress, session.seeds, ckpt,
                          session.resume, stop)
    except ConfigError as e:
        _discard(session)
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except RunStopped as e:
        _discard(session)
        print(f"{prog}: {e}", file=sys.stderr)
        return e.status
    except OSError as e:
        _discard(session)
        where = f" {e.filename}" if e.filename else ""
        print(f"{prog}: error: cannot write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if session is not None:
            session.lock.release()
    for summary in summaries:
        print(
            f"{prog}: seed {summary['seed']}: final greedy performance {summary['final_eval_performance']:.3f} over "
            f"{summary['final_eval_trials']} trials after {summary['env_steps']} env steps, {summary['wall_s']:.1f} s"
        )
    for d in session.dirs:
        print(f"{prog}: wrote {d}/config.yaml, metrics.csv, summary.json, params.msgpack")
    if stop.signum is not None:
        print(f"{prog}: {signal.Signals(stop.signum).name} after the run had finished: its results above are complete",
              file=sys.stderr)
        return 128 + stop.signum
    return 0


def _parser(prog: str, batching: str) -> argparse.ArgumentParser:
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
    return p


MAX_SEEDS = 4096  # seeds in one program; far beyond any machine's memory anyway


def _new_run(args, prog, batching) -> Session:
    """Check everything that can be checked, then make the run folder(s): nothing is written for
    a run that is refused."""
    overrides = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load(args.config, overrides)
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds {args.seeds}: must lie in [1, {MAX_SEEDS}]")
    seeds = [cfg["seed"] + i for i in range(args.seeds)]
    if seeds[-1] >= 2**32:
        raise ConfigError(f"--seed {cfg['seed']}: seeds must stay below 2**32")
    info = probe_env(cfg)
    network = build_network(cfg, info["num_actions"])
    check_network(network, info["obs_dim"])
    check_trials(cfg, info)
    check_resources(cfg, batching, network, info["obs_dim"], info["num_actions"], len(seeds))
    if cfg["env"]["backend"] == "jax":
        store_state = batching == "segment" and cfg["segment"]["stored_state"]
        collector = JaxCollector(info["env"], info["env_params"], network, episode_spec(cfg), cfg["env"]["num_envs"],
                                 cfg["train"]["steps_per_iter"], store_state)
        check_iteration_fits(cfg, collector.max_rows_per_call())
    top = Path(args.out) if args.out else Path("runs") / f"{cfg['name']}-{datetime.now():%Y%m%d-%H%M%S}"
    RunFolder.check(top)
    created_top = not top.exists()
    _make_folder(top, "--out")
    lock = RunLock(top)
    session = Session(top=top, cfg=cfg, seeds=seeds, dirs=[], runs=[], resume=None, lock=lock,
                      run_id=uuid.uuid4().hex, created_top=created_top)
    try:
        _atomic_write(top / RUN_FILE, json.dumps(dict(
            run_id=session.run_id, program=prog, batching=batching, backend=cfg["env"]["backend"], seeds=seeds,
        ), indent=2).encode())
        session.dirs = [top] if len(seeds) == 1 else [top / f"seed{s}" for s in seeds]
        for d, s in zip(session.dirs, seeds):
            session.runs.append(RunFolder(d, {**cfg, "seed": s}))
    except (ConfigError, OSError):
        _discard(session)
        session.lock.release()
        raise
    return session


def _discard(session: Session | None) -> None:
    """Remove what a new run wrote before its first checkpoint, so that a refused or interrupted
    start leaves no half-made folder behind (the folder can then be reused with --out). A run
    with a checkpoint, or a resumed one, is never touched."""
    if session is None or not session.new or (session.top / checkpoint.FILENAME).exists():
        return
    for d in session.dirs:
        for name in ("config.yaml", "metrics.csv"):
            (d / name).unlink(missing_ok=True)
        if d != session.top:
            with contextlib.suppress(OSError):
                d.rmdir()
    for name in (RUN_FILE, LOCK_FILE):
        (session.top / name).unlink(missing_ok=True)
    if session.created_top:
        with contextlib.suppress(OSError):
            session.top.rmdir()


def _read_run_file(top: Path) -> dict:
    try:
        info = json.loads((top / RUN_FILE).read_text())
        if not (isinstance(info, dict) and isinstance(info.get("run_id"), str) and isinstance(info.get("seeds"), list)
                and all(isinstance(x, int) for x in info["seeds"]) and info["seeds"]):
            raise ValueError("fields missing")
        return info
    except FileNotFoundError:
        raise ConfigError(f"--resume {top}: no {checkpoint.FILENAME} there (not a run folder of this program: no {RUN_FILE})") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"--resume {top}: {RUN_FILE} is damaged ({_one_line(e)})") from None


def _reopen(top: Path, batching: str) -> Session:
    """Validate an interrupted run folder and reopen it: same run (run id), same program, not
    finished, every seed's files in place. A folder killed before its first checkpoint, with no
    metrics row yet, starts again from its saved config."""
    if not top.is_dir():
        raise ConfigError(f"--resume {top}: no such run folder")
    info = _read_run_file(top)
    if info.get("batching", batching) != batching:
        raise ConfigError(f"--resume {top}: a {info['batching']} run; resume it with {info['batching']}_dqn.py")
    seeds = info["seeds"]
    dirs = [top] if len(seeds) == 1 else [top / f"seed{s}" for s in seeds]
    lock = RunLock(top)
    try:
        return _reopen_locked(top, batching, info, seeds, dirs, lock)
    except BaseException:
        lock.release()
        raise


def _reopen_locked(top, batching, info, seeds, dirs, lock) -> Session:
    def seed_files(ds):
        for d in ds:
            if not d.is_dir():
                raise ConfigError(f"--resume {top}: {d.name}/ is missing; this run cannot be continued")
            for name in ("config.yaml", "metrics.csv"):
                if not (d / name).is_file():
                    raise ConfigError(f"--resume {top}: {d.relative_to(top.parent)}/{name} is missing; this run cannot be continued")
            if (d / "summary.json").exists():
                raise ConfigError(f"--resume {top}: {d.name} already finished (summary.json is there); nothing to continue")

    try:
        ck = checkpoint.load(top)
    except FileNotFoundError:
        ck = None
    except OSError as e:
        raise ConfigError(f"--resume {top}: cannot read {checkpoint.FILENAME}: {e.strerror or e}") from None
    except checkpoint.CheckpointError as e:
        raise ConfigError(f"--resume {top}: {e}") from None
    if ck is None:  # killed during set-up: nothing trained yet, start again from the saved config
        seed_files(dirs)
        for d in dirs:
            if len((d / "metrics.csv").read_bytes().splitlines()) > 1:
                raise ConfigError(f"--resume {top}: no {checkpoint.FILENAME} there but metrics.csv has rows; this run cannot be continued")
        cfg = load(dirs[0] / "config.yaml")
        cfg["seed"] = seeds[0]
        runs = [RunFolder.reopen(d, 0) for d in dirs]
        return Session(top=top, cfg=cfg, seeds=seeds, dirs=dirs, runs=runs, resume=None, lock=lock,
                       run_id=info["run_id"], new=False)
    if ck["run_id"] != info["run_id"]:
        raise ConfigError(f"--resume {top}: {checkpoint.FILENAME} belongs to another run (run id {ck['run_id'][:8]}…, "
                          f"this folder's is {info['run_id'][:8]}…)")
    if ck["batching"] != batching:
        raise ConfigError(f"--resume {top}: a {ck['batching']} run; resume it with {ck['batching']}_dqn.py")
    if ck["finished"]:
        raise ConfigError(f"--resume {top}: the run already finished")
    if ck["seeds"] != seeds:
        raise ConfigError(f"--resume {top}: {checkpoint.FILENAME} and {RUN_FILE} disagree on the seeds")
    cfg = config_from_checkpoint(ck["config"], top)
    first = ck.get("seed_index", 0) if ck["backend"] == "neurogym" else 0
    if not isinstance(first, int) or not 0 <= first < len(seeds):
        raise ConfigError(f"--resume {top}: damaged checkpoint (seed_index)")
    seed_files(dirs[first:])
    rows = ck["rows"]
    last = [t.get("last") if isinstance(t, dict) else None for t in ck.get("trackers", [])] or [None]
    runs = [None] * len(seeds)
    try:
        for i in range(first, len(seeds)):
            if ck["backend"] == "jax":
                runs[i] = RunFolder.reopen(dirs[i], int(rows[i]), last[i])
            elif i == first:
                runs[i] = RunFolder.reopen(dirs[i], int(rows[0]), last[0] if not ck.get("fresh") else None)
            else:  # a later seed of a sequential neurogym run: not started yet
                runs[i] = RunFolder.reopen(dirs[i], 0)
    except (IndexError, TypeError, ValueError):
        raise ConfigError(f"--resume {top}: damaged checkpoint (rows)") from None
    return Session(top=top, cfg=cfg, seeds=seeds, dirs=dirs[first:] if ck["backend"] == "neurogym" else dirs,
                   runs=runs, resume=ck, lock=lock, run_id=info["run_id"], new=False)


def config_from_checkpoint(raw, top: Path) -> dict:
    """The checkpoint's resolved config, validated like a file."""
    from config import from_mapping

    return from_mapping(raw, f"--resume {top}: {checkpoint.FILENAME}")
