"""Throughput benchmark: double-DQN updates on tapes versus segments, buffer sampling, and
environment collection on both backends.

    python -m benchmarks.throughput [--quick] [--out FILE.json] [--trace DIR] [--only update|collection|scan] [--scan]
                                    [--episodes SOURCE] [--seed N]

Every figure is taken after warm-up, with `jax.block_until_ready` before each clock read; compile
time is reported apart (the jitted functions are compiled ahead of time with
`jax.jit(f).lower(...).compile()` and that is what `compile_s` times; for the neurogym backend,
whose jitted policy step compiles on its first call, `compile_s` is the first call's time minus the
median steady call's).

Three kinds of record (one JSON object each; the output file is a list of them):

- "update": one double-DQN update (`losses.update` under jit; sampling excluded) on a batch drawn
  once from a buffer filled with real episodes (`--episodes`: collected from a task's JAX port with
  a random policy under the experiments' episode rules, 5 trials or 200 steps, by default
  PerceptualDecisionMaking-v0; or, the --quick default, `pdm-like` synthetic episodes of exactly
  that task's shape: 110 transitions in 5 trials of 22 steps). Networks, optimiser and loss as in
  experiments/perceptual_decision_making/tape_<memory>.yaml. Tapes of N rows versus segments of L
  transitions with B = N / L (burn-in 0 and zero initial state, DRQN; or burn-in L/2 from the
  memory state stored at collection time, R2D2). Throughput counts VALID transitions (rows that
  enter the loss). `padding_overhead` = fraction of the rows the network runs over (tape: N;
  segments: B * (burn_in + L + 1), burn-in and bootstrap row included) that are not valid
  transitions; for segments `padding_overhead_expected` is its exact expectation under the sampler;
  `padding_rows` says where those rows are (tape: final rows, empty end; segments: burn-in,
  bootstrap row, empty window positions), in rows per batch.
- "sample": the jitted buffer sampler that makes such a batch (the `sample` of
  `buffer.make_tape_buffer` / `buffer.make_segment_buffer`), timed on its own.
- "collection": env steps per second. jax backend: `JaxCollector.collect` under jit (record=False:
  pure collection; record=True: episodes recorded for the buffer), plus a policy-free baseline
  (`random_nonet`: vmapped env.step with uniform random actions in a lax.scan), for every JAX port
  (collector/tasks) at 1024 envs and the first three tasks also at 4096 (--quick: one task); neurogym backend:
  `HostCollector.run` (real neurogym envs stepped in Python, jitted policy step). Policies:
  `random` (epsilon 1: the MPN policy network still runs, its output is ignored), `greedy`
  (epsilon 0, MPN).

`--trace DIR` profiles without touching the timings: after a measurement is timed, one more call of
the same compiled function runs inside `jax.profiler.trace(DIR/<NN>_<label>)` (one trace session
per measurement: a single session around a whole run grew past 20 GB on a CPU, where the profiler
records every op of every scan step). Calls whose median exceeds 1 s are not traced (the record
says so in `trace_skipped`); the others carry `trace_dir`. The profiler's buffers stay in the
process, so take peak-memory figures from a run without --trace.

Every record also carries jax_version, jax_backend (`jax.default_backend()`), device
(`jax.devices()[0].device_kind`), device_count and cpu_count; in collection records `backend` is the
environment backend (jax | neurogym, as the config key env.backend).

Peak memory per record: device bytes in use where the backend reports them
(`jax.devices()[0].memory_stats()`), else the process RSS (psutil), sampled every few ms by a
thread while the record is measured; `peak_memory_source` says which.
"""
from __future__ import annotations

import functools
import json
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from jaxenv import import_jax

jax = import_jax("python -m benchmarks.throughput")  # JAX's environment variables, checked in one line
import jax.numpy as jnp
import numpy as np

import buffer as buf
from buffer import Episodes, Tape
from collector.tasks import JAX_TASKS  # every JAX port: the full collection plan covers them all
from memory import MEMORY_ORDER  # every memory model: the full update plan covers them all
from oneline import OneLineParser

ROOT = Path(__file__).resolve().parents[1]
MEMORIES = MEMORY_ORDER
QUICK_MEMORIES = ("mpn", "gru")  # a chosen pair, not every model: the exact MPN and the baseline
EXPERIMENT_DIR = ROOT / "experiments" / "perceptual_decision_making"
DEFAULT_TASK = "PerceptualDecisionMaking-v0"
TASKS = ("PerceptualDecisionMaking-v0", "DelayMatchSample-v0", "ContextDecisionMaking-v0")
POLICIES = ("random", "greedy", "random_nonet")  # random_nonet: jax backend only


# ---------------------------------------------------------------------------------------------
# Environment, timing and memory helpers
# ---------------------------------------------------------------------------------------------
def environment_info() -> dict:
    """jax version, backend, device kind and CPU count, attached to every record."""
    dev = jax.devices()[0]
    return dict(
        jax_version=jax.__version__,
        jax_backend=jax.default_backend(),
        device=str(getattr(dev, "device_kind", dev.platform)),
        device_count=jax.device_count(),
        cpu_count=os.cpu_count(),
    )


def _device_memory_stats() -> dict | None:
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # some backends raise instead of returning None
        return None
    return stats if stats and "bytes_in_use" in stats else None


class PeakMemory:
    """Context manager sampling memory in a thread: device bytes in use if the backend reports
    them, else the process RSS. After exit: .fields() -> peak_memory_bytes, peak_memory_source,
    peak_memory_baseline_bytes (at entry) and the process-lifetime peak with its source."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.device = _device_memory_stats() is not None
        if not self.device:
            import psutil

            self._proc = psutil.Process()
        self.peak = self.baseline = 0
        self._stop = threading.Event()
        self._thread = None

    def _read(self) -> int:
        if self.device:
            stats = _device_memory_stats() or {}
            return int(stats.get("bytes_in_use", 0))
        return int(self._proc.memory_info().rss)

    def _poll(self):
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self._read())

    def __enter__(self):
        self.baseline = self.peak = self._read()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())
        return False

    def fields(self) -> dict:
        if self.device:
            stats = _device_memory_stats() or {}
            lifetime = int(stats.get("peak_bytes_in_use", self.peak))
            return dict(
                peak_memory_bytes=self.peak, peak_memory_source="device bytes_in_use (sampled)",
                peak_memory_baseline_bytes=self.baseline, peak_memory_lifetime_bytes=lifetime,
                peak_memory_lifetime_source="device peak_bytes_in_use (process lifetime)",
            )
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        lifetime = ru if sys.platform == "darwin" else ru * 1024
        return dict(
            peak_memory_bytes=self.peak, peak_memory_source="process RSS (psutil, sampled)",
            peak_memory_baseline_bytes=self.baseline, peak_memory_lifetime_bytes=int(lifetime),
            peak_memory_lifetime_source="process max RSS (getrusage, process lifetime)",
        )


def time_calls(call: Callable[[], Any], repeats: int, warmup: int = 1, budget_s: float | None = None,
               min_repeats: int = 2) -> list[float]:
    """Seconds of each of up to `repeats` calls after `warmup` calls, each ended by
    block_until_ready. Stops early once `budget_s` seconds were spent and `min_repeats` done."""
    for _ in range(warmup):
        jax.block_until_ready(call())
    times: list[float] = []
    while len(times) < repeats:
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
        if budget_s is not None and len(times) >= min_repeats and sum(times) >= budget_s:
            break
    return times


# --trace: after each measurement is timed, one more call of the same function runs inside its own
# jax.profiler.trace session, DIR/<NN>_<label>/ (the timed calls themselves stay untraced: on a CPU
# the profiler records every op of every scan step, which distorts the timings). Calls slower than
# max_s seconds are not traced: a 10k-step sequential scan update already writes ~2 GB of events.
_TRACE: dict = {"dir": None, "max_s": 1.0, "count": 0}


def set_trace(directory: str | os.PathLike | None, max_s: float = 1.0) -> None:
    """Trace one extra call of every measurement into `directory` (None: no tracing)."""
    _TRACE.update(dir=None if directory is None else Path(directory), max_s=max_s, count=0)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:120]


def timed(call: Callable[[], Any], repeats: int, label: str, warmup: int = 1, budget_s: float | None = None,
          min_repeats: int = 2) -> tuple[list[float], dict]:
    """time_calls, then (with --trace) one traced call. Returns (seconds of each timed call,
    record fields: timing statistics and trace_dir or trace_skipped)."""
    times = time_calls(call, repeats, warmup=warmup, budget_s=budget_s, min_repeats=min_repeats)
    fields = _timing_fields(times)
    if _TRACE["dir"] is not None:
        if fields["seconds_median"] > _TRACE["max_s"]:
            fields["trace_skipped"] = f"call takes {fields['seconds_median']:.2f} s > {_TRACE['max_s']} s"
        else:
            _TRACE["count"] += 1
            d = _TRACE["dir"] / f"{_TRACE['count']:03d}_{_safe(label)}"
            with jax.profiler.trace(str(d)), jax.profiler.TraceAnnotation(label):
                jax.block_until_ready(call())
            fields["trace_dir"] = str(d)
    return times, fields


def aot_compile(fn, *args, static_argnames=()):
    """jit(fn) compiled ahead of time for these arguments: (executable, lower_s, compile_s)."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn, static_argnames=static_argnames).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, t1 - t0, t2 - t1


def _timing_fields(times: Sequence[float]) -> dict:
    t = np.asarray(times)
    return dict(
        seconds_median=float(np.median(t)), seconds_min=float(t.min()), seconds_max=float(t.max()),
        repeats=int(t.size),
    )


# ---------------------------------------------------------------------------------------------
# Networks and train states as the experiments build them
# ---------------------------------------------------------------------------------------------
def experiment_config(memory: str, overrides: Sequence[str] = ()) -> dict:
    """The resolved config of experiments/perceptual_decision_making/tape_<memory>.yaml (hidden 64;
    mpn/mpn_pre with input_proj 10, input_bias true), with `--set`-style overrides."""
    from config import load

    return load(EXPERIMENT_DIR / f"tape_{memory}.yaml", list(overrides))


def make_train_state(memory: str, obs_dim: int, num_actions: int, seed: int = 0, overrides: Sequence[str] = ()):
    """(cfg, network, TrainState) for a memory, with the experiment's optimiser and loss settings:
    learner.make_train_state, run under one jit (eager initialisation dispatches, and on first use
    compiles, every small op on its own: seconds on a CPU). Cached: arrays are immutable."""
    return _make_train_state(memory, obs_dim, num_actions, seed, tuple(overrides))


@functools.lru_cache(maxsize=None)
def _make_train_state(memory, obs_dim, num_actions, seed, overrides):
    from learner import build_network, make_train_state as _make

    cfg = experiment_config(memory, overrides)
    network = build_network(cfg, num_actions)
    ts = jax.jit(lambda key: _make(cfg, network, obs_dim, key))(jax.random.PRNGKey(seed))
    return cfg, network, ts


# ---------------------------------------------------------------------------------------------
# Filling buffers
# ---------------------------------------------------------------------------------------------
def synthetic_episodes(transitions: Sequence[int], obs_dim: int = 3, num_actions: int = 3,
                       trial_steps: int | None = None, rows: int | None = None, seed: int = 0) -> Episodes:
    """Hand-built episodes (host numpy) with the given numbers of transitions: episode e has
    transitions[e] + 1 rows (the last is its final observation); reset flags at row 0 and, if
    trial_steps is set, at every multiple of it (memory reset at trial boundaries)."""
    rng = np.random.default_rng(seed)
    t_max = max(transitions)
    r = rows or t_max + 1
    if r < t_max + 1:
        raise ValueError(f"rows={r} cannot hold an episode of {t_max} transitions plus its final row")
    e = len(transitions)
    n_rows = np.asarray(transitions, np.int32) + 1
    live = np.arange(r)[None, :] < n_rows[:, None]
    reset = np.zeros((e, r), bool)
    reset[:, 0] = True
    if trial_steps:
        reset[:, ::trial_steps] = True
    return Episodes(
        obs=np.where(live[..., None], rng.normal(size=(e, r, obs_dim)), 0).astype(np.float32),
        action=np.where(live, rng.integers(0, num_actions, (e, r)), 0).astype(np.int32),
        reward=np.where(live, rng.normal(size=(e, r)), 0).astype(np.float32),
        reset=reset & live,
        n_rows=n_rows,
        terminated=np.zeros(e, bool),
    )


def pdm_like_episodes(num_episodes: int, trials: int = 5, trial_steps: int = 22, seed: int = 0) -> Episodes:
    """Episodes shaped exactly as PerceptualDecisionMaking-v0 gives them under the experiments'
    rules (default timing: every trial is 22 steps whatever the actions; 5 trials per episode, so
    110 transitions + the final row; memory reset at every trial start); random contents."""
    return synthetic_episodes([trials * trial_steps] * num_episodes, obs_dim=3, num_actions=3,
                              trial_steps=trial_steps, seed=seed)


def collect_episodes(task: str = DEFAULT_TASK, min_rows: int = 20_000, num_envs: int = 512,
                     steps_per_call: int = 128, seed: int = 0, spec=None) -> Episodes:
    """Real episodes from the JAX port of `task`, random policy (epsilon 1), the experiments'
    episode rules (5 trials or 200 steps, memory reset at trial boundaries), until at least
    `min_rows` rows; host numpy, only completed episodes."""
    from collector.host import EpisodeSpec
    from collector.jax_collector import JaxCollector
    from collector.jax_envs import make_jax_env
    from memory import QNetwork, make_memory

    spec = spec or EpisodeSpec(trials=5, max_steps=200, reset_on_trial=True)
    env, env_params = make_jax_env(task)
    # the actions are all random (epsilon 1), so the smallest policy network does
    net = QNetwork(memory=make_memory("gru", hidden=2), num_actions=env.num_actions, head=())
    params = jax.jit(net.init)(jax.random.PRNGKey(seed), jnp.zeros((1, env.obs_dim)), jnp.ones((1,), bool))
    col = JaxCollector(env, env_params, net, spec, num_envs, steps_per_call)
    collect = jax.jit(col.collect)
    key = jax.random.PRNGKey(seed + 1)
    key, k0 = jax.random.split(key)
    cs = jax.jit(col.init)(k0)
    parts, rows = [], 0
    while rows < min_rows:
        key, k = jax.random.split(key)
        cs, eps, _ = collect(params, cs, jnp.float32(1.0), k)
        eps = jax.device_get(eps)
        keep = np.asarray(eps.n_rows) > 0
        parts.append(jax.tree.map(lambda x: np.asarray(x)[keep], eps))
        rows += int(np.asarray(eps.n_rows)[keep].sum())
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def take_episodes(eps: Episodes, max_rows: int) -> Episodes:
    """The first episodes of a batch holding at most max_rows rows (at least one episode)."""
    n_rows = np.asarray(eps.n_rows)
    k = max(1, int(np.searchsorted(np.cumsum(n_rows), max_rows, side="right")))
    return jax.tree.map(lambda x: x[:k], eps)


def episode_states(network, params, eps: Episodes, chunk: int = 64):
    """The memory state carried INTO every row of every episode by this network (as the collector
    stores it for R2D2): leaves [E, R, ...], host numpy. Vmapped over episodes, scanned over rows."""
    obs_dim = eps.obs.shape[-1]
    init = network.initial_state(obs_dim)

    @jax.jit
    def states(obs, reset):
        def one(o, r):
            def step(s, x):
                _, s_new = network.apply(params, x[0][None], x[1][None], s)
                return s_new, s

            return jax.lax.scan(step, init, (o, r))[1]

        return jax.vmap(one)(obs, reset)

    e = eps.obs.shape[0]
    pad = (-e) % chunk
    obs = np.concatenate([np.asarray(eps.obs), np.zeros((pad,) + eps.obs.shape[1:], np.float32)])
    reset = np.concatenate([np.asarray(eps.reset), np.ones((pad,) + eps.reset.shape[1:], bool)])
    out = [jax.device_get(states(obs[i : i + chunk], reset[i : i + chunk])) for i in range(0, e + pad, chunk)]
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:e], *out)


def build_buffer(eps: Episodes, capacity: int | None = None, state_example: Any = None, chunk: int = 128):
    """A BufferState holding these episodes in order (capacity: their total rows by default, so
    nothing wraps). With state_example, eps.state must hold the per-row states to store."""
    n_rows = np.asarray(eps.n_rows)
    total = int(n_rows.sum())
    capacity = capacity or total
    obs_dim = eps.obs.shape[-1]
    r = eps.obs.shape[1]
    chunk = max(1, min(chunk, capacity // r, len(n_rows)))
    # filling the ring does not depend on the sampling sizes: any valid tape size will do
    ring = buf.make_tape_buffer(capacity, obs_dim, tape_size=2, state_example=state_example)
    state = ring.init()
    add = jax.jit(ring.add, static_argnames="max_rows")
    e = len(n_rows)
    pad = (-e) % chunk

    def padded(x, fill=0):
        x = np.asarray(x)
        return np.concatenate([x, np.full((pad,) + x.shape[1:], fill, x.dtype)]) if pad else x

    full = jax.tree.map(padded, eps)
    for i in range(0, e + pad, chunk):
        part = jax.tree.map(lambda x: x[i : i + chunk], full)
        state = add(state, part, max_rows=min(capacity, chunk * r))
    return jax.block_until_ready(state)


# ---------------------------------------------------------------------------------------------
# Padding overhead
# ---------------------------------------------------------------------------------------------
def padding_overhead(batch) -> tuple[int, int, float]:
    """(valid transitions, rows the network runs over, fraction of those rows that are not valid
    transitions) of a Tape [N] or Segments [B, burn_in + L + 1] batch."""
    mask = np.asarray(batch.mask)
    valid, rows = int(mask.sum()), int(mask.size)
    return valid, rows, 1.0 - valid / rows


def padding_rows(batch) -> dict:
    """Where the rows of a batch that are not valid transitions are, in rows per batch.
    Tape: `final` (each episode's final-observation row) and `empty` (padding after the last
    episode). Segments: `burn_in` (B * burn_in), `bootstrap` (B: the row after the L transitions)
    and `empty` (positions among the L that hold no valid transition: past the episode's end or
    its final row). valid + the rest = rows the network runs over."""
    return _padding_rows(batch.mask, batch.valid, None if isinstance(batch, Tape) else int(batch.burn_in))


def _padding_rows(mask, valid, burn_in: int | None) -> dict:
    """padding_rows from a batch's mask and valid arrays; burn_in None for a tape."""
    mask, valid = np.asarray(mask), np.asarray(valid)
    if burn_in is None:
        return dict(final=int((valid & ~mask).sum()), empty=int((~valid).sum()))
    b, w = mask.shape
    length = w - burn_in - 1
    return dict(burn_in=b * burn_in, bootstrap=b, empty=b * length - int(mask.sum()))


def expected_segment_overhead(state: buf.BufferState, length: int, burn_in: int = 0,
                              stride: int | None = None) -> tuple[float, float]:
    """Exact expectation under a segment buffer's sample (uniform over segment starts): (mean valid
    transitions per segment, padding overhead = 1 - that / (burn_in + length + 1))."""
    stride = stride or length
    intact = np.asarray(buf.intact(state))
    last = np.asarray(state.last)
    offset = np.asarray(state.offset)
    ep_rows = np.asarray(state.ep_rows)
    starts = intact & ~last & (offset % stride == 0)
    if not starts.any():
        raise ValueError("the buffer holds no segment start")
    valid = np.minimum(length, ep_rows[starts] - 1 - offset[starts])
    mean_valid = float(valid.mean())
    return mean_valid, 1.0 - mean_valid / (burn_in + length + 1)


# ---------------------------------------------------------------------------------------------
# Update and sample measurements
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchConfig:
    """One batching configuration. tape: size rows; segment: B = batch_size windows of `length`
    transitions, `burn_in` rows before, stored state (R2D2) or not (DRQN)."""

    batching: str  # "tape" | "segment"
    size: int = 0  # tape rows
    lanes: int = 1  # tape lanes (buffer.make_tape_buffer(lanes=K))
    length: int = 0  # segment length L
    batch_size: int = 0  # segments B
    burn_in: int = 0
    stored_state: bool = False

    @property
    def nominal_transitions(self) -> int:
        return self.size if self.batching == "tape" else self.batch_size * self.length

    @property
    def rows(self) -> int:
        """Rows the network runs over per batch."""
        if self.batching == "tape":
            return self.size
        return self.batch_size * (self.burn_in + self.length + 1)

    def fields(self) -> dict:
        tape = self.batching == "tape"
        return dict(
            batching=self.batching,
            segment_mode=None if tape else ("r2d2" if self.stored_state else "drqn"),
            tape_size=self.size if tape else None,
            tape_lanes=self.lanes if tape else None,
            segment_length=None if tape else self.length,
            batch_size=None if tape else self.batch_size,
            burn_in=None if tape else self.burn_in,
            stored_state=None if tape else self.stored_state,
            nominal_transitions=self.nominal_transitions,
            rows_per_batch=self.rows,
        )

    def sampler(self, state: buf.BufferState):
        """sample(state, key) of this configuration's buffer, for a ring shaped like `state`
        (its capacity, obs size and stored states)."""
        capacity, obs_dim = state.obs.shape
        if self.batching == "tape":
            return buf.make_tape_buffer(capacity, obs_dim, self.size, lanes=self.lanes).sample
        example = None if state.state is None else jax.tree.map(lambda x: x[0], state.state)
        return buf.make_segment_buffer(
            capacity, obs_dim, self.batch_size, self.length, burn_in=self.burn_in,
            stored_state=self.stored_state, state_example=example,
        ).sample


def batch_configs(tape_sizes=(), transitions=(), lengths=(), burn_in_modes=("drqn",)) -> list[BatchConfig]:
    """Tapes of each size; segments of each length L with B = transitions // L for each
    nominal transition count, burn-in 0 (drqn) and/or burn-in L // 2 with stored state (r2d2)."""
    out = [BatchConfig("tape", size=n) for n in tape_sizes]
    for n in transitions:
        for length in lengths:
            if n // length < 1:
                continue
            for mode in burn_in_modes:
                r2d2 = mode == "r2d2"
                out.append(BatchConfig("segment", length=length, batch_size=n // length,
                                       burn_in=length // 2 if r2d2 else 0, stored_state=r2d2))
    return out


def bench_sample(state: buf.BufferState, cfg: BatchConfig, repeats: int = 10, seed: int = 0,
                 budget_s: float | None = 2.0, count_batches: int = 32, label: str = "sample") -> tuple[dict, Any]:
    """Time the jitted sampler for cfg on this buffer. Returns (record fields, the first batch).
    The valid-transition count and padding overhead are averaged over at least `count_batches`
    draws (every timed draw included)."""
    sample = cfg.sampler(state)
    keys = list(jax.random.split(jax.random.PRNGKey(seed), repeats + 2))
    compiled, lower_s, compile_s = aot_compile(sample, state, keys[0])
    first, masks = [], []  # keep the first batch whole, of the others only mask and valid

    def call():
        b = compiled(state, keys[len(masks) % len(keys)])
        if not first:
            first.append(b)
        masks.append((b.mask, b.valid))
        return b

    times, tfields = timed(call, repeats, label, budget_s=budget_s)
    # valid transitions per batch vary from draw to draw: count them over count_batches draws
    for i in range(max(0, count_batches - len(masks))):
        b = compiled(state, jax.random.fold_in(keys[-1], i))
        masks.append((b.mask, b.valid))
    burn_in = None if cfg.batching == "tape" else cfg.burn_in
    valid = float(np.mean([int(np.asarray(m).sum()) for m, _ in masks]))
    where = [_padding_rows(m, v, burn_in) for m, v in masks]
    where = {k: float(np.mean([w[k] for w in where])) for k in where[0]}
    fields = dict(
        **tfields, lower_s=lower_s, compile_s=lower_s + compile_s, compile_method="aot lower+compile",
        valid_transitions=valid, valid_transitions_batches=len(masks), padding_overhead=1.0 - valid / cfg.rows,
        padding_rows=where,
        transitions_per_s=valid / float(np.median(times)),
    )
    if cfg.batching == "segment":
        _, exp = expected_segment_overhead(state, cfg.length, cfg.burn_in)
        fields["padding_overhead_expected"] = exp
    else:
        fields["padding_overhead_expected"] = None
    return fields, first[0]


def bench_update(ts, batch, repeats: int = 10, budget_s: float | None = 3.0, label: str = "update") -> dict:
    """Time one jitted `losses.update` on a fixed batch (the train state is carried from call to
    call, as in training). Returns seconds, compile time and the loss of the last call."""
    from losses import update

    compiled, lower_s, compile_s = aot_compile(update, ts, batch)
    carry = {"ts": ts, "metrics": None}

    def call():
        carry["ts"], carry["metrics"] = compiled(carry["ts"], batch)
        return carry["ts"], carry["metrics"]

    times, tfields = timed(call, repeats, label, budget_s=budget_s)
    loss = float(carry["metrics"]["loss"])
    return dict(**tfields, lower_s=lower_s, compile_s=lower_s + compile_s,
                compile_method="aot lower+compile", loss_finite=bool(np.isfinite(loss)))


def run_update_benchmarks(memories: Sequence[str] = QUICK_MEMORIES, configs: Sequence[BatchConfig] = (),
                          episodes: Episodes | str = DEFAULT_TASK, repeats: int = 10,
                          sample_repeats: int = 10, state_rows: int = 50_000, seed: int = 0,
                          overrides: Sequence[str] = (), budget_s: float | None = 3.0,
                          num_actions: int | None = None,
                          log: Callable[[str], None] | None = None) -> list[dict]:
    """Update and sample records for every memory x batch config.

    episodes: what fills the buffer, with enough rows for twice the largest tape (at least 20k):
    a JAX task id (collected with the JAX collector, random policy), "pdm-like" (synthetic
    episodes shaped exactly as PerceptualDecisionMaking-v0's: 110 transitions in 5 trials of 22
    steps), or an Episodes batch (then give num_actions). Tapes and DRQN segments sample from one
    buffer of all of them; R2D2 segments (stored_state) from a buffer of the first episodes (up to
    state_rows rows) holding each memory's own per-row states."""
    log = log or (lambda s: None)
    env = environment_info()
    configs = list(configs)
    need = 2 * max([c.size for c in configs if c.batching == "tape"] + [10_000])
    task = None
    if isinstance(episodes, str) and episodes == "pdm-like":
        episodes = pdm_like_episodes(-(-need // 111), seed=seed)
        task, source, num_actions = "pdm-like", "pdm-like (synthetic: 5 trials x 22 steps)", 3
        log(f"filling the buffer with {need} rows of synthetic PerceptualDecisionMaking-like episodes")
    elif isinstance(episodes, str):
        from collector.jax_envs import make_jax_env

        task = episodes
        log(f"filling the buffer: collecting {need} rows of {task} episodes (JAX collector, random policy)")
        episodes = collect_episodes(task, min_rows=need, num_envs=min(512, max(64, need // 128)), seed=seed)
        log(f"collected {int(np.asarray(episodes.n_rows).sum())} rows in {len(episodes.n_rows)} episodes")
        source, num_actions = f"{task} (JAX collector, random policy)", make_jax_env(task)[0].num_actions
    else:
        source = "given episodes"
        num_actions = num_actions or 3
    obs_dim = int(episodes.obs.shape[-1])
    n_rows = np.asarray(episodes.n_rows)
    ep_fields = dict(
        task=task, episode_source=source, episodes_in_buffer=int(len(n_rows)),
        episode_mean_transitions=float((n_rows - 1).mean()), buffer_rows=int(n_rows.sum()),
    )
    state = build_buffer(episodes)
    records: list[dict] = []
    sample_cache: dict[BatchConfig, tuple[dict, Any]] = {}

    def failed(kind, fields, err):
        msg = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        log(f"  FAILED {kind} {fields}: {msg}")
        records.append(dict(kind=kind, **fields, **env, error=msg))

    for memory in memories:
        _, network, ts = make_train_state(memory, obs_dim, num_actions, seed, overrides)
        state_buffer = None
        for cfg in configs:
            params = dict(memory=memory, **cfg.fields(), **ep_fields)
            try:
                bs = state
                if cfg.stored_state:
                    if state_buffer is None:
                        sub = take_episodes(episodes, state_rows)
                        sub = sub.replace(state=episode_states(network, ts.params, sub))
                        state_buffer = build_buffer(sub, state_example=network.initial_state(obs_dim))
                        log(f"{memory}: buffer of {int(np.asarray(sub.n_rows).sum())} rows with stored states")
                    bs = state_buffer
                # the sampler does not depend on the memory unless it gathers stored states
                cache_key = cfg if not cfg.stored_state else (cfg, memory)
                if cache_key not in sample_cache:
                    with PeakMemory() as pm:
                        fields, batch = bench_sample(bs, cfg, sample_repeats, seed, budget_s,
                                                     label=f"sample_{memory if cfg.stored_state else ''}_{_batch_label(params)}")
                    sample_params = dict(params, memory=memory if cfg.stored_state else None)
                    if cfg.stored_state:
                        sample_params["buffer_rows"] = int(np.asarray(bs.ep_rows)[np.asarray(bs.offset) == 0].sum())
                    records.append(dict(kind="sample", **sample_params, **fields, **pm.fields(), **env))
                    sample_cache[cache_key] = (fields, batch)
                    log(_line(records[-1]))
                sfields, batch = sample_cache[cache_key]
                with PeakMemory() as pm:
                    ufields = bench_update(ts, batch, repeats, budget_s, label=f"update_{memory}_{_batch_label(params)}")
                t = ufields["seconds_median"]
                valid = sfields["valid_transitions"]
                rec = dict(
                    kind="update", **params, **ufields,
                    valid_transitions=valid, padding_overhead=sfields["padding_overhead"],
                    padding_overhead_expected=sfields["padding_overhead_expected"], padding_rows=sfields["padding_rows"],
                    transitions_per_s=valid / t, rows_per_s=cfg.rows / t,
                    sample_seconds_median=sfields["seconds_median"],
                    transitions_per_s_with_sample=valid / (t + sfields["seconds_median"]),
                    **pm.fields(), **env,
                )
                records.append(rec)
                log(_line(rec))
            except Exception as err:  # one failing config (e.g. out of memory) must not end the run
                failed("update", params, err)
    return records


# ---------------------------------------------------------------------------------------------
# Fast tapes: one core, lanes, hidden 64 and 128, FLOPs and the core's peak (--only tapes)
# ---------------------------------------------------------------------------------------------
ONE_CORE_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
ONE_CORE_CPU = 1  # the core `--one-core` pins to (taskset -c 1)
_ONE_CORE_MARK = "MPN_DQN_ONE_CORE"


def one_core_reexec(argv: Sequence[str]) -> None:
    """Re-run this command pinned to one core (taskset -c ONE_CORE_CPU) with XLA's one-thread
    flags; the flags must be set before jax starts, hence a new process. Returns only when already
    inside that process."""
    if os.environ.get(_ONE_CORE_MARK) == "1":
        return
    import shutil

    if shutil.which("taskset") is None:
        raise SystemExit("python -m benchmarks.throughput: error: --one-core needs taskset (util-linux)")
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + ONE_CORE_XLA_FLAGS).strip())
    env[_ONE_CORE_MARK] = "1"
    os.execvpe("taskset", ["taskset", "-c", str(ONE_CORE_CPU), sys.executable, "-m", "benchmarks.throughput",
                           *argv], env)


def one_core_fields() -> dict:
    """What every record of a --one-core run states about its settings."""
    return dict(one_core=os.environ.get(_ONE_CORE_MARK) == "1", xla_flags=os.environ.get("XLA_FLAGS", ""),
                cpu_affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)


def core_peak_flops(n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a float32 n x n matrix product under jit on this process's cores: the practical
    peak the update is measured against (a dense GEMM is the most an XLA CPU kernel gets)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    times = time_calls(lambda: f(a, a), repeats, warmup=2)
    return 2.0 * n ** 3 / min(times)


def mpn_update_flops_per_row(hidden: int, nx: int, obs_in: int, head: Sequence[int], num_actions: int) -> float:
    """Arithmetic of one double-DQN update per tape row for the exact MPN, counted from the
    equations (a multiply, an add, a tanh each count 1): the online network forward and backward
    (the lean scan's hand-written backward pass) and the target network forward. nx: layer inputs
    (with the constant), obs_in: projection inputs (obs + constant)."""
    hn = hidden * nx
    proj = 2 * obs_in * nx
    mem_fwd = 2 * hn + hidden + 5 * hn + hidden + 3 * hn  # W x + b; (W ⊙ M) x; tanh; λM + η h xᵀ
    widths = [hidden, *head, num_actions]
    head_fwd = sum(2 * a * b + b for a, b in zip(widths[:-1], widths[1:]))
    mem_bwd = 10 * hn + 4 * hidden + 2 * hn  # reverse scan (g, dλ, x·da, dU, dM') + dW of the drive
    head_bwd = 2 * head_fwd
    return 2 * (proj + mem_fwd + head_fwd) + mem_bwd + head_bwd


def tape_grid(quick: bool = False) -> list[BatchConfig]:
    """The configurations of the fast-tape comparison: tapes of ~1k and ~10k rows with 1 lane and
    several lane counts (each lane >= 201 rows, the longest episode the experiments allow), and
    DRQN segments 32 x 10, 100 x 10, 1024 x 10 and 20 x 50."""
    tapes = [(1024, 1), (1024, 4), (10_240, 1), (10_240, 40)] if quick else \
        [(1024, 1), (1024, 2), (1024, 4), (10_240, 1), (10_240, 10), (10_240, 20), (10_240, 40)]
    segs = [(32, 10), (100, 10), (1024, 10), (20, 50)]
    return ([BatchConfig("tape", size=n, lanes=k) for n, k in tapes]
            + [BatchConfig("segment", length=l, batch_size=b) for b, l in segs])


def run_tape_benchmarks(hiddens: Sequence[int] = (64, 128), configs: Sequence[BatchConfig] | None = None,
                        baseline: Sequence[BatchConfig] | None = None, episodes: Episodes | str = DEFAULT_TASK,
                        repeats: int = 10, budget_s: float | None = 3.0, seed: int = 0, peak_n: int = 1024,
                        log: Callable[[str], None] | None = None) -> list[dict]:
    """Update records of the exact MPN for every hidden size x config, each with
    flops_per_transition (mpn_update_flops_per_row x rows / valid transitions), achieved_flops_per_s
    and peak_fraction against core_peak_flops(); plus, for `baseline` configs, the same update with
    the plain autodiff scan (memory_kwargs.lean=false, `scan_path: plain`), measured in the same
    process for a side-by-side figure."""
    log = log or (lambda s: None)
    configs = list(tape_grid() if configs is None else configs)
    baseline = list(baseline or [])
    peak = core_peak_flops(peak_n)
    log(f"core peak (f32 {peak_n}^3 matmul under jit): {peak / 1e9:.1f} GFLOP/s")
    num_actions, obs_dim = 3, 3  # pdm-like
    if isinstance(episodes, str) and episodes != "pdm-like":
        from collector.jax_envs import make_jax_env

        need = 2 * max([c.size for c in configs if c.batching == "tape"] + [10_000])
        log(f"collecting {need} rows of {episodes} episodes (JAX collector, random policy)")
        num_actions = make_jax_env(episodes)[0].num_actions
        episodes = collect_episodes(episodes, min_rows=need, num_envs=512, seed=seed)
    if not isinstance(episodes, str):
        obs_dim = int(episodes.obs.shape[-1])
    records = []
    for hidden in hiddens:
        runs = [(configs, ("true",))] + ([(baseline, ("false",))] if baseline else [])
        for cfgs, (lean,) in runs:
            overrides = (f"model.memory_kwargs.hidden={hidden}", f"model.memory_kwargs.lean={lean}")
            recs = run_update_benchmarks(("mpn",), cfgs, episodes=episodes, repeats=repeats, sample_repeats=3,
                                         seed=seed, overrides=overrides, budget_s=budget_s,
                                         num_actions=num_actions, log=log)
            exp = experiment_config("mpn", overrides)
            kw = exp["model"]["memory_kwargs"]
            per_row = mpn_update_flops_per_row(hidden, kw["input_proj"], obs_dim + 1, exp["model"]["head"], num_actions)
            for r in recs:
                r.update(hidden=hidden, scan_path="lean" if lean == "true" else "plain", **one_core_fields())
                if r["kind"] == "update" and not r.get("error"):
                    fpt = per_row * r["rows_per_batch"] / r["valid_transitions"]
                    # best of the repeats: on a shared machine the fastest call is the one least
                    # slowed by other processes, so it is the steadier figure to compare
                    r["transitions_per_s_best"] = r["valid_transitions"] / r["seconds_min"]
                    r.update(flops_per_row=per_row, flops_per_transition=fpt,
                             achieved_flops_per_s=fpt * r["transitions_per_s"], peak_flops_per_s=peak,
                             peak_flops_method=f"f32 {peak_n}x{peak_n} matmul under jit, best of 5",
                             peak_fraction=fpt * r["transitions_per_s"] / peak,
                             peak_fraction_best=fpt * r["transitions_per_s_best"] / peak)
            records += recs
    return records


def lane_padding(tasks: Sequence[str] = TASKS, sizes_lanes=((1024, 1), (1024, 2), (1024, 4), (10_240, 1),
                                                               (10_240, 10), (10_240, 20), (10_240, 40)),
                 batches: int = 32, seed: int = 0, log: Callable[[str], None] | None = None) -> list[dict]:
    """Padding overhead of tapes per lane count on real episodes of each task (JAX collector,
    random policy, the experiments' episode rules): the fraction of rows that are not valid
    transitions, averaged over `batches` sampled tapes. kind "lane_padding"."""
    log = log or (lambda s: None)
    out = []
    for task in tasks:
        eps = collect_episodes(task, min_rows=2 * max(n for n, _ in sizes_lanes), num_envs=512, seed=seed)
        state = build_buffer(eps)
        rows = np.asarray(eps.n_rows)
        for n, k in sizes_lanes:
            sample = jax.jit(jax.vmap(BatchConfig("tape", size=n, lanes=k).sampler(state), in_axes=(None, 0)))
            tapes = sample(state, jax.random.split(jax.random.PRNGKey(seed), batches))
            valid = np.asarray(tapes.mask).reshape(batches, -1).sum(axis=1)
            rec = dict(kind="lane_padding", task=task, tape_size=n, tape_lanes=k, lane_rows=n // k,
                       batches=batches, valid_transitions=float(valid.mean()),
                       padding_overhead=float(1.0 - valid.mean() / n), episode_rows_mean=float(rows.mean()),
                       episode_rows_max=int(rows.max()), **environment_info())
            out.append(rec)
            log(f"lane padding {task:28s} N={n:<6d} K={k:<3d} pad {rec['padding_overhead']:.3f}")
    return out


# ---------------------------------------------------------------------------------------------
# Collection measurements
# ---------------------------------------------------------------------------------------------
def policy_network(env_obs_dim: int, num_actions: int, seed: int = 0, overrides: Sequence[str] = ()):
    """The MPN policy network of experiments/.../tape_mpn.yaml and its initial parameters."""
    _, network, ts = make_train_state("mpn", env_obs_dim, num_actions, seed, overrides)
    return network, ts.params


def random_rollout_fn(env, env_params, num_envs: int, steps: int):
    """(env_state, key) -> (env_state, checksum): `steps` vector steps of vmapped env.step with
    uniform random actions in a lax.scan, no policy network (the checksum keeps every
    observation and reward live)."""

    def rollout(env_state, key):
        def step(carry, k):
            st, acc = carry
            ka, ke = jax.random.split(k)
            a = jax.random.randint(ka, (num_envs,), 0, env.num_actions)
            obs, st, r, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(jax.random.split(ke, num_envs), st, a, env_params)
            return (st, acc + obs.sum() + r.sum()), None

        (st, acc), _ = jax.lax.scan(step, (env_state, jnp.zeros((), jnp.float32)), jax.random.split(key, steps))
        return st, acc

    return rollout


def bench_jax_collection(task: str, num_envs: int, steps: int, policies: Sequence[str], records: Sequence[bool],
                         repeats: int = 5, seed: int = 0, overrides: Sequence[str] = (),
                         budget_s: float | None = 3.0) -> list[dict]:
    """Records for JaxCollector.collect (policies random/greedy, each record flag) and the
    policy-free random rollout (random_nonet) on the JAX port of `task`."""
    from collector.host import EpisodeSpec
    from collector.jax_collector import JaxCollector
    from collector.jax_envs import make_jax_env

    env, env_params = make_jax_env(task)
    spec = EpisodeSpec(trials=5, max_steps=200, reset_on_trial=True)
    network, params = policy_network(env.obs_dim, env.num_actions, seed, overrides)
    out = []
    base = dict(kind="collection", backend="jax", task=task, num_envs=num_envs, steps_per_call=steps,
                env_steps_per_call=num_envs * steps)
    for record in records:
        pols = [p for p in policies if p in ("random", "greedy")]
        if not pols:
            continue
        col = JaxCollector(env, env_params, network, spec, num_envs, steps, record=record)
        key = jax.random.PRNGKey(seed)
        cs = jax.jit(col.init)(key)
        compiled, lower_s, compile_s = None, 0.0, 0.0
        for policy in pols:
            eps = jnp.float32(1.0 if policy == "random" else 0.0)
            fields = dict(base, policy=policy, policy_network="mpn", epsilon=float(eps), record=record)
            with PeakMemory() as pm:
                cached = compiled is not None
                if compiled is None:
                    compiled, lower_s, compile_s = aot_compile(col.collect, params, cs, eps, key)
                carry = {"cs": cs, "key": key}

                def call():
                    carry["key"], k = jax.random.split(carry["key"])
                    carry["cs"], episodes, stats = compiled(params, carry["cs"], eps, k)
                    return carry["cs"], episodes, stats

                times, tfields = timed(call, repeats, f"collect_jax_{task}_{num_envs}_{policy}_rec{int(record)}",
                                       budget_s=budget_s)
            t = float(np.median(times))
            out.append(dict(**fields, **tfields, lower_s=lower_s, compile_s=lower_s + compile_s,
                            compile_method="aot lower+compile", compile_shared=cached,
                            env_steps_per_s=num_envs * steps / t, **pm.fields()))
    if "random_nonet" in policies:
        reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
        _, env_state = reset(jax.random.split(jax.random.PRNGKey(seed), num_envs), env_params)
        rollout = random_rollout_fn(env, env_params, num_envs, steps)
        with PeakMemory() as pm:
            key = jax.random.PRNGKey(seed + 1)
            compiled, lower_s, compile_s = aot_compile(rollout, env_state, key)
            carry = {"st": env_state, "key": key}

            def call():
                carry["key"], k = jax.random.split(carry["key"])
                carry["st"], acc = compiled(carry["st"], k)
                return carry["st"], acc

            times, tfields = timed(call, repeats, f"collect_jax_{task}_{num_envs}_random_nonet", budget_s=budget_s)
        t = float(np.median(times))
        out.append(dict(**base, policy="random_nonet", policy_network=None, epsilon=1.0, record=False,
                        **tfields, lower_s=lower_s, compile_s=lower_s + compile_s,
                        compile_method="aot lower+compile", compile_shared=False,
                        env_steps_per_s=num_envs * steps / t, **pm.fields()))
    return out


_HOST_POLICY_SHAPES: set = set()


def bench_host_collection(task: str, num_envs: int, steps: int, policies: Sequence[str], records: Sequence[bool],
                          repeats: int = 3, seed: int = 0, overrides: Sequence[str] = (),
                          budget_s: float | None = 3.0) -> list[dict]:
    """Records for HostCollector.run (real neurogym envs in Python, jitted policy step)."""
    from collector.host import EpisodeSpec, HostCollector
    from collector.ngym_compat import make_env

    probe = make_env(task)
    obs_dim = int(np.prod(probe.observation_space.shape))
    num_actions = int(probe.action_space.n)
    spec = EpisodeSpec(trials=5, max_steps=200, reset_on_trial=True)
    network, params = policy_network(obs_dim, num_actions, seed, overrides)
    out = []
    for record in records:
        for policy in [p for p in policies if p in ("random", "greedy")]:
            eps = 1.0 if policy == "random" else 0.0
            col = HostCollector(task, {}, num_envs, seed, 0, network, spec)
            key = jax.random.PRNGKey(seed)
            # collector.policy.policy_step (jitted, the network static) compiles once per shape
            shape = (network, num_envs, obs_dim)
            shared = shape in _HOST_POLICY_SHAPES
            _HOST_POLICY_SHAPES.add(shape)
            with PeakMemory() as pm:
                t0 = time.perf_counter()
                jax.block_until_ready(col.run(params, steps, eps, key, record=record)[0])
                first = time.perf_counter() - t0
                times, tfields = timed(lambda: col.run(params, steps, eps, key, record=record)[0], repeats,
                                       f"collect_neurogym_{task}_{num_envs}_{policy}_rec{int(record)}",
                                       warmup=0, budget_s=budget_s)
            t = float(np.median(times))
            out.append(dict(
                kind="collection", backend="neurogym", task=task, num_envs=num_envs, steps_per_call=steps,
                env_steps_per_call=num_envs * steps, policy=policy, policy_network="mpn", epsilon=eps,
                record=record, **tfields, lower_s=None, compile_s=max(0.0, first - t),
                compile_method="first call minus median call", compile_shared=shared,
                env_steps_per_s=num_envs * steps / t, **pm.fields(),
            ))
    return out


def run_collection_benchmarks(jax_tasks=(DEFAULT_TASK,), jax_envs=(1024,), jax_steps: int = 64,
                              host_tasks=(DEFAULT_TASK,), host_envs=(16,), host_steps: int = 32,
                              wide_tasks=(), wide_envs=(),
                              policies=POLICIES, records=(False, True), host_records=(True,),
                              repeats: int = 5, host_repeats: int = 3, seed: int = 0,
                              overrides: Sequence[str] = (), budget_s: float | None = 3.0,
                              log: Callable[[str], None] | None = None) -> list[dict]:
    log = log or (lambda s: None)
    env = environment_info()
    out: list[dict] = []
    # every JAX port at jax_envs; wide_tasks also at wide_envs; then the neurogym backend
    jobs = ([("jax", t, n) for t in jax_tasks for n in jax_envs] + [("jax", t, n) for t in wide_tasks for n in wide_envs]
            + [("neurogym", t, n) for t in host_tasks for n in host_envs])
    for backend, task, n in jobs:
        try:
            if backend == "jax":
                recs = bench_jax_collection(task, n, jax_steps, policies, records, repeats, seed, overrides, budget_s)
            else:
                recs = bench_host_collection(task, n, host_steps, policies, host_records, host_repeats, seed,
                                             overrides, budget_s)
        except Exception as err:
            msg = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            log(f"  FAILED collection {backend} {task} {n}: {msg}")
            out.append(dict(kind="collection", backend=backend, task=task, num_envs=n, **env, error=msg))
            continue
        for r in recs:
            r.update(env)
            out.append(r)
            log(_line(r))
    return out


# ---------------------------------------------------------------------------------------------
# Plans, table and command line
# ---------------------------------------------------------------------------------------------
def plan(quick: bool) -> dict:
    """Measurement grid. quick: under 2 minutes on a 2-core CPU (few configs, each compile costs
    seconds there)."""
    if quick:
        return dict(
            memories=QUICK_MEMORIES,
            configs=batch_configs(tape_sizes=(1000, 10_000), transitions=(1000,), lengths=(10, 50),
                                  burn_in_modes=("drqn",))
            + batch_configs(transitions=(1000,), lengths=(10,), burn_in_modes=("r2d2",)),
            episodes="pdm-like", repeats=5, sample_repeats=5, state_rows=12_000, budget_s=1.0,
            collection=dict(jax_tasks=(DEFAULT_TASK,), jax_envs=(1024,), jax_steps=32, host_tasks=(DEFAULT_TASK,),
                            host_envs=(16,), host_steps=16, records=(False,), host_records=(True,),
                            repeats=3, host_repeats=2, budget_s=1.0),
        )
    return dict(
        memories=MEMORIES,
        configs=batch_configs(tape_sizes=(1000, 10_000, 100_000), transitions=(1000, 10_000, 100_000),
                              lengths=(10, 50, 100), burn_in_modes=("drqn", "r2d2")),
        episodes=DEFAULT_TASK, repeats=10, sample_repeats=10, state_rows=50_000, budget_s=3.0,
        collection=dict(jax_tasks=JAX_TASKS, jax_envs=(1024,), wide_tasks=TASKS, wide_envs=(4096,), jax_steps=64,
                        host_tasks=TASKS,
                        host_envs=(16, 64), host_steps=32, records=(False, True), host_records=(False, True),
                        repeats=5, host_repeats=3, budget_s=3.0),
    )


def _fmt_rate(x) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.1f}"


def _fmt_bytes(x) -> str:
    return "-" if x is None else f"{x / 2**20:.0f}MiB"


def _fmt_delta(r: dict) -> str:
    """Peak over the memory in use when the measurement began."""
    return f"+{max(0, r['peak_memory_bytes'] - r['peak_memory_baseline_bytes']) / 2**20:.0f}MiB"


def _batch_label(r: dict) -> str:
    if r.get("batching") == "tape":
        k = r.get("tape_lanes") or 1
        return f"tape N={r['tape_size']}" + (f" K={k}" if k > 1 else "")
    return f"seg L={r['segment_length']} B={r['batch_size']} {r['segment_mode']}"


def _line(r: dict) -> str:
    if r.get("error"):
        return f"{r['kind']}: ERROR {r['error']}"
    if r["kind"] in ("update", "sample"):
        return (f"{r['kind']:7s} {r.get('memory') or '-':8s} {_batch_label(r):28s} "
                f"{r['seconds_median'] * 1e3:9.2f} ms  {_fmt_rate(r['transitions_per_s']):>8s} trans/s  "
                f"pad {r['padding_overhead']:.3f}  compile {r['compile_s']:.1f}s")
    return (f"collect {r['backend']:8s} {r['task']:28s} N={r['num_envs']:<5d} {r['policy']:12s} "
            f"rec={'y' if r['record'] else 'n'} {_fmt_rate(r['env_steps_per_s']):>8s} steps/s  "
            f"compile {r['compile_s']:.1f}s")


def format_table(records: Sequence[dict]) -> str:
    """A readable plain-text table of the records, one section per kind."""
    lines = []
    up = [r for r in records if r["kind"] == "update" and not r.get("error")]
    if up:
        lines += ["", "UPDATE (one double-DQN update, jit, sample excluded; throughput in VALID transitions/s)",
                  f"{'memory':8s} {'batch':28s} {'valid':>8s} {'pad':>6s} {'ms/update':>10s} {'trans/s':>9s} "
                  f"{'+sample':>9s} {'compile':>8s} {'peak mem':>9s} {'(+new)':>8s}"]
        for r in up:
            lines.append(
                f"{r['memory']:8s} {_batch_label(r):28s} {r['valid_transitions']:8.0f} {r['padding_overhead']:6.3f} "
                f"{r['seconds_median'] * 1e3:10.2f} {_fmt_rate(r['transitions_per_s']):>9s} "
                f"{_fmt_rate(r['transitions_per_s_with_sample']):>9s} {r['compile_s']:7.1f}s {_fmt_bytes(r['peak_memory_bytes']):>9s} "
                f"{_fmt_delta(r):>8s}"
            )
    sm = [r for r in records if r["kind"] == "sample" and not r.get("error")]
    if sm:
        lines += ["", "SAMPLE (jitted buffer sampler)",
                  f"{'memory':8s} {'batch':28s} {'valid':>8s} {'pad':>6s} {'pad exp':>7s} {'ms/sample':>10s} {'compile':>8s}"]
        for r in sm:
            exp = r.get("padding_overhead_expected")
            lines.append(
                f"{r.get('memory') or '-':8s} {_batch_label(r):28s} {r['valid_transitions']:8.0f} {r['padding_overhead']:6.3f} "
                f"{'-' if exp is None else f'{exp:.3f}':>7s} {r['seconds_median'] * 1e3:10.2f} {r['compile_s']:7.1f}s"
            )
    co = [r for r in records if r["kind"] == "collection" and not r.get("error")]
    if co:
        lines += ["", "COLLECTION (env steps/s)",
                  f"{'backend':8s} {'task':28s} {'envs':>5s} {'policy':12s} {'record':6s} {'ms/call':>9s} "
                  f"{'steps/s':>9s} {'compile':>8s} {'peak mem':>9s} {'(+new)':>8s}"]
        for r in co:
            lines.append(
                f"{r['backend']:8s} {r['task']:28s} {r['num_envs']:5d} {r['policy']:12s} {str(r['record']):6s} "
                f"{r['seconds_median'] * 1e3:9.1f} {_fmt_rate(r['env_steps_per_s']):>9s} {r['compile_s']:7.1f}s "
                f"{_fmt_bytes(r['peak_memory_bytes']):>9s} {_fmt_delta(r):>8s}"
            )
    ft = [r for r in records if r["kind"] == "update" and "hidden" in r and not r.get("error")]
    if ft:
        lines += ["", "FAST TAPES (exact MPN; valid transitions/s, median and best call; FLOPs per valid transition "
                      "from the equations; peak: f32 matmul under jit on the same core(s), best call)",
                  f"{'hidden':>6s} {'scan':5s} {'batch':28s} {'valid':>7s} {'pad':>6s} {'trans/s':>9s} {'best':>9s} "
                  f"{'kFLOP/tr':>9s} {'GFLOP/s':>8s} {'of peak':>8s}"]
        for r in ft:
            lines.append(
                f"{r['hidden']:6d} {r['scan_path']:5s} {_batch_label(r):28s} {r['valid_transitions']:7.0f} "
                f"{r['padding_overhead']:6.3f} {_fmt_rate(r['transitions_per_s']):>9s} "
                f"{_fmt_rate(r['transitions_per_s_best']):>9s} "
                f"{r['flops_per_transition'] / 1e3:9.1f} {r['achieved_flops_per_s'] / 1e9:8.2f} {r['peak_fraction_best']:8.3f}")
        r0 = ft[0]
        lines.append(f"core peak {r0['peak_flops_per_s'] / 1e9:.1f} GFLOP/s; one core: {r0['one_core']} "
                     f"(affinity {r0['cpu_affinity']}, XLA_FLAGS '{r0['xla_flags']}')")
    lp = [r for r in records if r["kind"] == "lane_padding"]
    if lp:
        lines += ["", "LANE PADDING (real episodes, random policy; fraction of tape rows that are not valid transitions)",
                  f"{'task':28s} {'N':>6s} {'K':>3s} {'lane rows':>9s} {'pad':>6s} {'episode rows mean/max':>22s}"]
        for r in lp:
            lines.append(f"{r['task']:28s} {r['tape_size']:6d} {r['tape_lanes']:3d} {r['lane_rows']:9d} "
                         f"{r['padding_overhead']:6.3f} {r['episode_rows_mean']:10.1f} / {r['episode_rows_max']}")
    bad = [r for r in records if r.get("error")]
    if bad:
        lines += ["", "FAILED"] + [f"{r['kind']}: {r['error']}" for r in bad]
    if records:
        r0 = records[0]
        src = next((r["peak_memory_source"] for r in records if "peak_memory_source" in r), "-")
        lines += ["", f"jax {r0['jax_version']}, backend {r0['jax_backend']}, device {r0['device']}, "
                      f"{r0['cpu_count']} CPUs; peak memory: {src} during the measurement (compile included), "
                      "(+new): above what was in use when it began"]
    return "\n".join(lines)


def parse_args(argv):
    p = OneLineParser(prog="python -m benchmarks.throughput",
                description="Throughput of tape vs segment double-DQN updates, buffer sampling and collection.")
    p.add_argument("--quick", action="store_true", help="fewer configurations and repeats (under 2 minutes on a 2-core CPU)")
    p.add_argument("--out", metavar="FILE.json", help="write the records (a JSON list) to this file")
    p.add_argument("--trace", metavar="DIR",
                   help="profile: after each measurement is timed, one more call runs inside "
                        "jax.profiler.trace(DIR/<NN>_<label>) (calls over 1 s are skipped: their traces "
                        "take gigabytes); view with TensorBoard or Perfetto")
    p.add_argument("--only", choices=("update", "collection", "scan", "tapes"),
                   help="run only this group of measurements (tapes: the fast-tape comparison, exact MPN at "
                        "hidden 64 and 128, tapes with lanes vs segments, FLOPs and the core's peak, and the "
                        "padding per lane count on the three tasks; not part of the default run)")
    p.add_argument("--one-core", action="store_true",
                   help=f"pin the run to one core (taskset -c {ONE_CORE_CPU}) with XLA_FLAGS=\"{ONE_CORE_XLA_FLAGS}\"; "
                        "every record states these settings")
    p.add_argument("--scan", action="store_true",
                   help="also run the exact-MPN scan comparison (benchmarks/scan.py: sequential vs parallel vs "
                        "mpn_pre, forward and forward+backward against tape length and hidden size)")
    p.add_argument("--episodes", metavar="SOURCE",
                   help="what fills the replay buffer for the update measurements: a JAX task id "
                        f"({', '.join(TASKS)}; collected with the JAX collector, random policy) or pdm-like "
                        "(synthetic episodes shaped as PerceptualDecisionMaking-v0's). Default: "
                        f"{DEFAULT_TASK}; pdm-like with --quick")
    p.add_argument("--seed", type=int, default=0, help="seed of parameters, envs and sampling (default 0)")
    args = p.parse_args(argv)
    if args.out is not None:
        out = Path(args.out)
        if not out.parent.is_dir():  # not made for the user: a typo would write somewhere unexpected
            p.error(f"--out {out}: folder {out.parent} does not exist")
        from plotting.common import PlotError, check_writable

        try:  # tried for real (root passes os.access where it still cannot write, e.g. /proc)
            check_writable(out, "--out")
        except PlotError as e:
            p.exit(2, f"{p.prog}: error: {e}\n")
    if args.episodes is not None and args.episodes not in TASKS + ("pdm-like",):
        p.error(f"--episodes {args.episodes}: expected one of {', '.join(TASKS + ('pdm-like',))}")
    if args.trace is not None and Path(args.trace).exists() and not Path(args.trace).is_dir():
        p.error(f"--trace {args.trace}: exists and is not a folder")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.one_core:
        one_core_reexec(argv)
    t_start = time.perf_counter()
    log = lambda s: print(f"[{time.perf_counter() - t_start:6.1f}s] {s}", file=sys.stderr, flush=True)
    cfg = plan(args.quick)
    info = environment_info()
    log(f"benchmarks.throughput: {'quick' if args.quick else 'full'} run on {info['jax_backend']} "
        f"({info['device']}, {info['cpu_count']} CPUs), jax {info['jax_version']}")
    t0 = time.perf_counter()
    records: list[dict] = []
    set_trace(args.trace)
    try:
        if args.only in (None, "update"):
            records += run_update_benchmarks(
                cfg["memories"], cfg["configs"], episodes=args.episodes or cfg["episodes"],
                repeats=cfg["repeats"], sample_repeats=cfg["sample_repeats"],
                state_rows=cfg["state_rows"], seed=args.seed, budget_s=cfg["budget_s"], log=log,
            )
        if args.only in (None, "collection"):
            records += run_collection_benchmarks(**cfg["collection"], seed=args.seed, log=log)
        if args.only == "tapes":
            grid = tape_grid(args.quick)
            base = [c for c in grid if (c.batching == "tape" and c.lanes == 1)
                    or (c.batching == "segment" and c.batch_size in (100, 1024))]
            records += run_tape_benchmarks(
                (64, 128), grid, base, episodes=args.episodes or cfg["episodes"], repeats=cfg["repeats"],
                budget_s=cfg["budget_s"], seed=args.seed, log=log)
            records += [dict(r, **one_core_fields()) for r in
                        lane_padding(TASKS, ((1024, 1), (1024, 4), (10_240, 1), (10_240, 40)) if args.quick
                                     else ((1024, 1), (1024, 2), (1024, 4), (10_240, 1), (10_240, 10),
                                           (10_240, 20), (10_240, 40)), seed=args.seed, log=log)]
    finally:
        set_trace(None)
    scan_records = []
    if args.only == "scan" or args.scan:
        from benchmarks import scan

        lengths = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
        hiddens = [64] if args.quick else [64, 128, 256]
        scan_records = scan.run(lengths, hiddens, reps=3, max_gb=8.0, max_seconds=120.0, log=log)
        for r in scan_records:  # one file: 'kind' names the measurement group, 'pass' fwd / fwd_bwd
            r["pass"], r["kind"] = r["kind"], "scan"
    wall = time.perf_counter() - t0
    for r in records + scan_records:
        r["run"] = "quick" if args.quick else "full"
    print(format_table(records))
    if scan_records:
        from benchmarks import scan

        print("\n".join(scan.summarize([dict(r, kind=r["pass"]) for r in scan_records])))
    records += scan_records
    print(f"\n{len(records)} records in {wall:.1f} s" + (f"; trace in {args.trace}" if args.trace else ""))
    if args.out:
        Path(args.out).write_text(json.dumps(records, indent=1, default=_json_default))
        print(f"wrote {args.out}")
    return 0


def _json_default(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


if __name__ == "__main__":
    sys.exit(main())
