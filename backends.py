"""The two backends the driver (training.py) runs, behind one small interface.

- `JaxBackend`: the pure functions of `learner.make_jax_train`, vmapped over the seeds trained side
  by side and jitted; many iterations per call, all inside XLA.
- `HostBackend`: one seed on the real neurogym envs stepped in Python (collector/host.py), with a
  jitted policy step and a jitted block of updates.

Both run in iterations of `per_iter` env steps and give the driver the same things (`Backend`):
run k iterations, the next metrics rows, the final evaluation, the state to checkpoint and its
restore. Everything about schedules, rows, checkpoints and signals is the driver's.
"""
from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import checkpoint
from collector.host import HostCollector, evaluate
from collector.policy import epsilon_at
from config import ConfigError
from learner import (INT_VALUE_KEYS, build_network, episode_spec, make_buffer, make_jax_train, make_train_state,
                     stores_state, update_block)


class Backend(Protocol):
    """What the driver needs from a backend that trains `seeds` side by side."""

    seeds: list  # the seeds trained side by side (one per run folder)
    per_iter: int  # env steps per iteration and seed
    max_block: int  # most iterations `run` takes at once (the driver checks signals in between)

    def run(self, n: int) -> np.ndarray:
        """Run n iterations. Returns [S] int: per seed the first update (1-based) whose loss or
        parameters were not finite, -1 for none; when any is >= 0 the state is left as it was."""

    def row(self) -> list[dict]:
        """Evaluate the greedy policy and return each seed's metrics row (all but wall_s), clearing
        the sums since the previous row."""

    def final(self, n_trials: int) -> list[dict]:
        """Final greedy evaluation: per seed dict(performance, reward_per_trial, trials)."""

    def counts(self) -> list[tuple[int, int]]:
        """Per seed (env steps, updates) so far."""

    def params(self, i: int):
        """Seed i's parameters as numpy arrays."""

    def state(self) -> dict:
        """Plain data (checkpoint.to_plain) to continue from."""

    def restore(self, saved: dict) -> None:
        """Continue from `state()`; raises checkpoint.CheckpointError when it does not fit."""


def restored(what: str, fn):
    """fn() restoring part of a checkpoint; any mismatch becomes one CheckpointError line."""
    try:
        return fn()
    except checkpoint.CheckpointError:
        raise
    except Exception as e:  # a foreign or damaged checkpoint can fail in many ways
        raise checkpoint.CheckpointError(f"the checkpoint's {what} does not fit this run ({type(e).__name__}: {str(e)[:120]})") from None


def make_jax_env(cfg: dict):
    """The pure-JAX port of env.task with env.kwargs; a bad kwarg is a ConfigError."""
    from collector.jax_envs import make_jax_env as make
    from config import one_line

    try:
        return make(cfg["env"]["task"], **cfg["env"]["kwargs"])
    except (ValueError, TypeError) as e:
        raise ConfigError(f"env.kwargs: {one_line(e)}") from None


class JaxBackend:
    """All runs in one program: `learner.make_jax_train`'s functions vmapped over runs and jitted.
    A run is a seed and (in a sweep) its values of learner.VALUE_KEYS; with several local devices
    the run axis is sharded over them (padded with copies of the last run to a multiple of the
    device count; the copies are computed and dropped)."""

    max_block = 1 << 30

    def __init__(self, cfg: dict, batching: str, seeds: list, hps: list | None = None, devices=None,
                 state_dir=None):
        """state_dir: where a sharded state is checkpointed with orbax (None: pickled, gathered)."""
        env, env_params = make_jax_env(cfg)
        network = build_network(cfg, env.num_actions)
        t = make_jax_train(cfg, batching, env, env_params, network)
        self.seeds, self.per_iter, self.cfg = list(seeds), t.per_iter, cfg
        hps = list(hps or [{}] * len(self.seeds))
        devices = list(devices or jax.local_devices())
        pad = (-len(self.seeds)) % len(devices)
        seeds_p, hps_p = self.seeds + self.seeds[-1:] * pad, hps + hps[-1:] * pad
        hp = {k: jnp.asarray([h[k] for h in hps_p], jnp.int32 if k in INT_VALUE_KEYS else jnp.float32)
              for k in hps[0]}
        self.sharding = None
        if len(devices) > 1:
            self.sharding = NamedSharding(Mesh(np.asarray(devices), ("runs",)), PartitionSpec("runs"))
        self.state_dir = state_dir if self.sharding is not None else None
        shard = {} if self.sharding is None else dict(out_shardings=self.sharding)
        self._iterate = jax.jit(jax.vmap(t.iterate, in_axes=(0, None)), **shard)
        self._row = jax.jit(jax.vmap(t.row), **shard)
        self._final = jax.jit(jax.vmap(t.evaluate, in_axes=(0, 0, None)), static_argnums=2)
        self.carry = jax.jit(jax.vmap(t.init), **shard)(jnp.asarray(seeds_p, jnp.uint32), hp)

    def run(self, n: int) -> np.ndarray:
        new = self._iterate(self.carry, jnp.int32(n))
        bad = np.asarray(new.bad_update)[: len(self.seeds)]
        if not (bad >= 0).any():
            self.carry = new
        return bad

    def row(self) -> list[dict]:
        self.carry, values = self._row(self.carry)
        values = jax.device_get(values)
        return [{k: v[i] for k, v in values.items()} for i in range(len(self.seeds))]

    def final(self, n_trials: int) -> list[dict]:
        out = jax.device_get(self._final(self.carry.ts.params, self.carry.eval_key, n_trials))
        return [{k: v[i] for k, v in out.items()} for i in range(len(self.seeds))]

    def counts(self) -> list[tuple[int, int]]:
        steps, updates = np.asarray(self.carry.env_steps), np.asarray(self.carry.updates)
        return [(int(steps[i]), int(updates[i])) for i in range(len(self.seeds))]

    def params(self, i: int):
        return jax.tree.map(lambda x: np.asarray(x[i]), self.carry.ts.params)

    def _orbax(self):
        """An orbax CheckpointManager on state_dir, confined to this process (in a multi-process
        sweep every process checkpoints its own program on its own schedule)."""
        import orbax.checkpoint as ocp

        multi = ocp.options.MultiprocessingOptions(active_processes={jax.process_index()}) if jax.process_count() > 1 \
            else ocp.options.MultiprocessingOptions()
        return ocp, ocp.CheckpointManager(self.state_dir.resolve(), options=ocp.CheckpointManagerOptions(
            max_to_keep=2, enable_async_checkpointing=False, multiprocessing_options=multi))

    def state(self) -> dict:
        if self.state_dir is None:
            return dict(carry=checkpoint.to_plain(self.carry))
        # sharded: each device's shard written as it is (no gathering); the pickled checkpoint
        # names the step, and the previous step stays until the next one is complete
        ocp, manager = self._orbax()
        step = (manager.latest_step() or 0) + 1
        manager.save(step, args=ocp.args.StandardSave(self.carry))
        manager.wait_until_finished()
        manager.close()
        return dict(orbax_step=step)

    def restore(self, saved: dict) -> None:
        if "orbax_step" in saved:
            if self.state_dir is None:
                raise checkpoint.CheckpointError("its state was written by orbax for sharded devices; run it on as many devices")
            ocp, manager = self._orbax()
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), self.carry)
            self.carry = restored("sharded state", lambda: manager.restore(int(saved["orbax_step"]),
                                                                          args=ocp.args.StandardRestore(abstract)))
            manager.close()
            return
        carry = checkpoint.from_plain(self.carry, restored("state", lambda: saved["carry"]), "training state")
        self.carry = carry if self.sharding is None else jax.device_put(carry, self.sharding)


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


class HostBackend:
    """One seed on the real neurogym envs: collection in Python, jitted policy and updates."""

    max_block = 1

    def __init__(self, cfg: dict, batching: str, seeds: list):
        from collector.ngym_compat import make_env

        (seed,) = seeds
        tr = cfg["train"]
        self.cfg, self.seeds, self.seed = cfg, list(seeds), seed
        self.spec = episode_spec(cfg)
        self.task, self.task_kwargs = cfg["env"]["task"], cfg["env"]["kwargs"]
        probe = make_env(self.task, **self.task_kwargs)
        self.network = build_network(cfg, probe.action_space.n)
        obs_dim = int(np.prod(probe.observation_space.shape))
        store_state = stores_state(cfg, batching)
        state_example = self.network.initial_state(obs_dim) if store_state else None
        self.key, k_init = jax.random.split(jax.random.PRNGKey(seed))
        self.ts = make_train_state(cfg, self.network, obs_dim, k_init)
        self.buffer = make_buffer(cfg, batching, obs_dim, state_example)
        self.buffer_state = self.buffer.init()
        self._add = jax.jit(self.buffer.add)
        # one add must never wrap the ring onto itself: episodes go in power-of-two chunks that fit
        self.max_per_add = max(1, 1 << (int(tr["buffer_capacity"] // self.spec.max_rows).bit_length() - 1))
        self._block = jax.jit(update_block(self.buffer.sample, tr["updates_per_iter"]))
        self.collector = HostCollector(self.task, self.task_kwargs, cfg["env"]["num_envs"], seed, 0, self.network,
                                       self.spec, store_state)
        self.per_iter = tr["steps_per_iter"] * cfg["env"]["num_envs"]
        self.env_steps, self.updates = 0, 0
        self.acc = dict(perf=[], loss=[], q=[], grad_norm=[], fallbacks=0)
        self.eps = tr["eps_start"]

    def _add_episodes(self, eps) -> None:
        e = eps.action.shape[0]
        for i in range(0, e, self.max_per_add):
            part = eps if e <= self.max_per_add else jax.tree.map(lambda x: x[i: i + self.max_per_add], eps)
            self.buffer_state = self._add(self.buffer_state, part)

    def run(self, n: int) -> np.ndarray:
        tr = self.cfg["train"]
        for _ in range(n):
            self.eps = float(epsilon_at(self.env_steps, tr["eps_start"], tr["eps_end"], tr["eps_decay_steps"]))
            self.key, k_col, k_train = jax.random.split(self.key, 3)
            episodes, stats = self.collector.run(self.ts.params, tr["steps_per_iter"], self.eps, k_col)
            if episodes is not None:
                self._add_episodes(episodes)
            self.env_steps += self.per_iter
            self.acc["perf"].append(stats.performance)
            if self.env_steps >= tr["learning_starts"]:
                ts, m = self._block(self.ts, self.buffer_state, k_train)
                if int(m["bad"]) >= 0:
                    return np.asarray([self.updates + int(m["bad"]) + 1])
                self.ts = ts
                self.updates += tr["updates_per_iter"]
                self.acc["loss"].append(float(m["loss"]))
                self.acc["q"].append(float(m["q_mean"]))
                self.acc["grad_norm"].append(float(m["grad_norm"]))
                self.acc["fallbacks"] += int(m["fallbacks"])
        return np.asarray([-1])

    def _evaluate(self, n_trials: int) -> dict:
        ev = self.cfg["eval"]
        return evaluate(self.network, self.ts.params, self.task, self.task_kwargs, self.spec, ev["num_envs"],
                        self.seed, n_trials)

    def row(self) -> list[dict]:
        result = self._evaluate(self.cfg["eval"]["trials"])
        a = self.acc
        values = dict(
            env_steps=self.env_steps, updates=self.updates, eval_performance=result["performance"],
            eval_reward_per_trial=result["reward_per_trial"], train_performance=_mean(np.concatenate(a["perf"])),
            loss=_mean(a["loss"]), q_mean=_mean(a["q"]), epsilon=self.eps, scan_fallbacks=a["fallbacks"],
            grad_norm=_mean(a["grad_norm"]), dropped_episodes=0,  # the host collector never drops an episode
        )
        self.acc = dict(perf=[], loss=[], q=[], grad_norm=[], fallbacks=0)
        return [values]

    def final(self, n_trials: int) -> list[dict]:
        return [self._evaluate(n_trials)]

    def counts(self) -> list[tuple[int, int]]:
        return [(self.env_steps, self.updates)]

    def params(self, i: int):
        return self.ts.params

    def state(self) -> dict:
        return dict(
            ts=checkpoint.to_plain(self.ts), buffer=checkpoint.to_plain(self.buffer_state), key=np.asarray(self.key),
            collector=self.collector.state_dict(), env_steps=self.env_steps, updates=self.updates, eps=self.eps,
            acc=dict(self.acc),
        )

    def restore(self, saved: dict) -> None:
        restored("envs", lambda: self.collector.load_state_dict(saved["collector"]))
        self.ts = checkpoint.from_plain(self.ts, restored("train state", lambda: saved["ts"]), "train state")
        self.buffer_state = checkpoint.from_plain(self.buffer_state, restored("buffer", lambda: saved["buffer"]), "replay buffer")
        self.key = restored("PRNG key", lambda: jnp.asarray(np.asarray(saved["key"], np.uint32).reshape(2)))

        def counters():
            self.env_steps, self.updates, self.eps = int(saved["env_steps"]), int(saved["updates"]), float(saved["eps"])
            acc = saved["acc"]
            self.acc = dict(perf=list(acc["perf"]), loss=list(acc["loss"]), q=list(acc["q"]),
                            grad_norm=list(acc["grad_norm"]), fallbacks=int(acc["fallbacks"]))

        restored("counters", counters)


def make_backend(cfg: dict, batching: str, seeds: list) -> Backend:
    """The backend of env.backend for `seeds` (one seed on the neurogym backend)."""
    cls = JaxBackend if cfg["env"]["backend"] == "jax" else HostBackend
    return cls(cfg, batching, seeds)


def seed_groups(cfg: dict, seeds: list) -> list[list]:
    """The seeds trained side by side, group after group: all at once on the jax backend (vmapped),
    one at a time on the neurogym backend."""
    return [list(seeds)] if cfg["env"]["backend"] == "jax" else [[s] for s in seeds]
