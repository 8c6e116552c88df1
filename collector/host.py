"""Collection from real NeuroGym environments stepped in Python (the `neurogym` backend).

N envs run in lockstep; one jitted policy step per vector step carries every env's memory state
and explores with our own PRNG (neurogym's reset() samples from an action space seeded at 0 in
every env, so we never rely on it). Episodes are cut from the endless stream of trials by the
episode rule of collector/episode.py.
"""
from __future__ import annotations

import types
from dataclasses import dataclass

import jax
import numpy as np

from buffer import Episodes
from collector.episode import EpisodeSpec, advance
from collector.ngym_compat import make_env
from collector.policy import batched_initial_state, policy_step


def env_seeds(seed: int, stream: int, n: int) -> list[int]:
    """Independent per-env seeds; `stream` separates training envs (0) from evaluation envs (1)."""
    return [int(s) for s in np.random.SeedSequence([seed, stream]).generate_state(n)]


_SKIP = object()


def _plain(v, depth: int = 0):
    """v as plain data (numbers, strings, numpy arrays, lists, tuples and dicts of them), or _SKIP
    when it is not data (a function, a space, an env, any other object)."""
    if depth > 20:
        return _SKIP
    if v is None or isinstance(v, (bool, int, float, str, np.generic)):
        return v
    if isinstance(v, np.ndarray):
        return _SKIP if v.dtype.hasobject else v.copy()
    if isinstance(v, (list, tuple)):
        items = [_plain(x, depth + 1) for x in v]
        return _SKIP if any(x is _SKIP for x in items) else type(v)(items) if isinstance(v, list) else tuple(items)
    if isinstance(v, dict):
        items = {k: _plain(x, depth + 1) for k, x in v.items()}
        ok = all(_plain(k, depth + 1) is not _SKIP for k in v) and all(x is not _SKIP for x in items.values())
        return items if ok else _SKIP
    return _SKIP


def _layers(env):
    """The env and every env it wraps, outermost first."""
    layers = [env]
    while hasattr(layers[-1], "env"):
        layers.append(layers[-1].env)
    return layers


def _rngs(obj, path: tuple, out: dict, seen: set, depth: int = 0) -> None:
    """Collect every numpy random generator reachable from obj through dicts, lists, tuples and
    plain objects' attributes (e.g. a timing sampler's own RandomState), keyed by the path."""
    if id(obj) in seen or depth > 8:
        return
    seen.add(id(obj))
    if isinstance(obj, np.random.RandomState):
        out[path] = ("RandomState", obj.get_state())
    elif isinstance(obj, np.random.Generator):
        out[path] = ("Generator", obj.bit_generator.state)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if _plain(k) is not _SKIP:
                _rngs(v, path + (("key", k),), out, seen, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _rngs(v, path + (("idx", i),), out, seen, depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.ModuleType)):
        for k, v in vars(obj).items():
            _rngs(v, path + (("attr", k),), out, seen, depth + 1)


def _follow(obj, path: tuple):
    for kind, k in path:
        obj = getattr(obj, k) if kind == "attr" else obj[k]
    return obj


def env_state(env) -> dict:
    """Everything that evolves in a neurogym env, as plain data: per wrapper layer its data
    attributes, and the state of every numpy random generator reachable from it (the trial RNG,
    the timing samplers' own RNGs, the spaces' samplers). Constructor-made objects (timing
    functions, spaces, closures) are left out: `set_env_state` applies the data to a freshly made
    env of the same task and kwargs, which has rebuilt them."""
    layers = []
    for layer in _layers(env):
        data = {}
        for k, v in vars(layer).items():
            p = _plain(v) if k != "env" else _SKIP
            if p is not _SKIP:
                data[k] = p
        rngs: dict = {}
        seen = {id(x) for x in _layers(env)}
        for k, v in vars(layer).items():
            if k not in ("env", "_top", "unwrapped"):
                _rngs(v, (("attr", k),), rngs, seen)
        layers.append(dict(type=type(layer).__name__, data=data, rngs=list(rngs.items())))
    return dict(layers=layers)


def set_env_state(env, state: dict) -> None:
    """Apply `env_state(old)` to `env`, a fresh env made with the same task and kwargs."""
    layers = _layers(env)
    saved = state["layers"]
    if [type(x).__name__ for x in layers] != [x["type"] for x in saved]:
        raise ValueError("the saved env has other wrappers than this one")
    for layer, s in zip(layers, saved):
        for k, v in s["data"].items():
            setattr(layer, k, v)
        for path, (kind, value) in s["rngs"]:
            target = _follow(layer, path)
            if kind == "RandomState":
                target.set_state(value)
            else:
                target.bit_generator.state = value


@dataclass
class TrialStats:
    """Trials finished during a call, in order of completion (first trial of each env dropped,
    because neurogym's reset() already consumed its first step with a random action)."""

    performance: np.ndarray  # [n] 1.0 if the trial ended with a correct choice
    reward: np.ndarray  # [n] total reward of the trial
    steps: np.ndarray  # [n] steps the trial took


class HostCollector:
    """N seeded NeuroGym envs plus the per-env episode being recorded."""

    def __init__(self, task, task_kwargs, num_envs, seed, stream, network, spec: EpisodeSpec, store_state=False):
        self.network, self.spec, self.n = network, spec, num_envs
        self.envs = [make_env(task, **(task_kwargs or {})) for _ in range(num_envs)]
        for env, s in zip(self.envs, env_seeds(seed, stream, num_envs)):
            env.unwrapped.seed(s)
        first = [np.array(env.reset()[0], np.float32).reshape(-1) for env in self.envs]
        self.obs = np.stack(first)
        self.obs_dim = self.obs.shape[1]
        self.num_actions = int(self.envs[0].action_space.n)
        self.state = batched_initial_state(network, self.obs_dim, num_envs)
        self.start = np.ones(num_envs, bool)
        n, r = num_envs, spec.max_rows
        self.rec_obs = np.zeros((n, r, self.obs_dim), np.float32)
        self.rec_action = np.zeros((n, r), np.int32)
        self.rec_reward = np.zeros((n, r), np.float32)
        self.rec_reset = np.zeros((n, r), bool)
        self.store_state = store_state
        self.rec_state = (
            jax.tree.map(lambda x: np.zeros((n, r) + x.shape[1:], x.dtype), self.state) if store_state else None
        )
        self.pos = np.zeros(n, np.int64)
        self.ep_trials = np.zeros(n, np.int64)
        self.trial_reward = np.zeros(n, np.float64)
        self.trial_steps = np.zeros(n, np.int64)
        self.first_trial = np.ones(n, bool)
        self.env_steps = 0

    _ARRAYS = ("obs", "start", "rec_obs", "rec_action", "rec_reward", "rec_reset", "pos", "ep_trials",
               "trial_reward", "trial_steps", "first_trial")

    def state_dict(self) -> dict:
        """For checkpoints: the collector's arrays, memory states and its envs' states, all as
        plain data (no env object is pickled; see env_state)."""
        d = {k: getattr(self, k).copy() for k in self._ARRAYS}
        d.update(env_steps=self.env_steps, envs=[env_state(e) for e in self.envs],
                 state=jax.tree.map(np.asarray, jax.device_get(self.state)),
                 rec_state=None if self.rec_state is None else jax.tree.map(np.copy, self.rec_state))
        return d

    def load_state_dict(self, d: dict) -> None:
        """Continue from `state_dict()` of a collector built with the same arguments. Raises
        ValueError when the data does not fit this collector."""
        for k in self._ARRAYS:
            old, new = getattr(self, k), np.asarray(d[k])
            if new.shape != old.shape or new.dtype != old.dtype:
                raise ValueError(f"collector field {k} has shape {new.shape}, expected {old.shape}")
            setattr(self, k, new.copy())
        if len(d["envs"]) != self.n:
            raise ValueError(f"{len(d['envs'])} saved envs, expected {self.n}")
        for env, st in zip(self.envs, d["envs"]):
            set_env_state(env, st)
        same = lambda a, b: jax.tree.structure(a) == jax.tree.structure(b) and all(
            np.shape(x) == np.shape(y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        if not same(self.state, d["state"]) or (self.rec_state is None) != (d["rec_state"] is None) or (
                self.rec_state is not None and not same(self.rec_state, d["rec_state"])):
            raise ValueError("saved memory states do not fit this network")
        self.state = jax.tree.map(np.asarray, d["state"])
        self.rec_state = d["rec_state"]
        self.env_steps = int(d["env_steps"])

    def run(self, params, num_steps: int, epsilon: float, key, record: bool = True):
        """Step every env `num_steps` times. Returns (Episodes of the episodes that ended, padded
        to a power-of-two count, or None; TrialStats)."""
        n, ar = self.n, np.arange(self.n)
        keys = jax.random.split(key, num_steps)
        done_eps, perf, trew, tsteps = [], [], [], []
        rew = np.zeros(n, np.float32)
        new_trial = np.zeros(n, bool)
        trial_perf = np.zeros(n, np.float64)
        for i in range(num_steps):
            next_obs = np.empty_like(self.obs)  # fresh: jax may still alias the previous array
            action, new_state, _ = policy_step(
                self.network, params, self.state, self.obs, self.start, keys[i], epsilon
            )
            action = np.asarray(action)
            if record:
                p = self.pos
                self.rec_obs[ar, p] = self.obs
                self.rec_action[ar, p] = action
                self.rec_reset[ar, p] = self.start
                if self.store_state:
                    jax.tree.map(lambda rec, s: rec.__setitem__((ar, p), np.asarray(s)), self.rec_state, self.state)
            for j, env in enumerate(self.envs):
                o, r, _, _, info = env.step(int(action[j]))
                next_obs[j] = o  # copies: the raw obs is a view into the env's trial buffer
                rew[j] = r
                new_trial[j] = bool(info.get("new_trial", False))
                trial_perf[j] = float(info.get("performance", 0.0)) if new_trial[j] else 0.0
            if record:
                self.rec_reward[ar, self.pos] = rew
            self.trial_reward += rew
            self.trial_steps += 1
            for j in np.flatnonzero(new_trial):
                if not self.first_trial[j]:
                    perf.append(trial_perf[j])
                    trew.append(self.trial_reward[j])
                    tsteps.append(self.trial_steps[j])
                self.first_trial[j] = False
            self.trial_reward[new_trial] = 0.0
            self.trial_steps[new_trial] = 0
            cut = advance(self.spec, self.pos, self.ep_trials, new_trial)
            if record:
                for j in np.flatnonzero(cut.ended):
                    done_eps.append(self._finish(j, int(cut.steps[j]), next_obs[j], cut.trial_start[j], new_state))
            self.pos, self.ep_trials = cut.pos, cut.ep_trials
            self.obs = next_obs
            self.start = cut.start
            self.state = new_state
        self.env_steps += num_steps * n
        stats = TrialStats(np.asarray(perf, np.float64), np.asarray(trew, np.float64), np.asarray(tsteps, np.int64))
        return (_stack(done_eps, self.spec.max_rows) if done_eps else None), stats

    def _finish(self, j, t, final_obs, final_reset, state_after):
        """Close env j's episode: append its final observation as row t, a row without an action."""
        self.rec_obs[j, t] = final_obs
        self.rec_action[j, t] = 0
        self.rec_reward[j, t] = 0.0
        self.rec_reset[j, t] = final_reset
        ep = dict(
            obs=self.rec_obs[j].copy(),
            action=self.rec_action[j].copy(),
            reward=self.rec_reward[j].copy(),
            reset=self.rec_reset[j].copy(),
            n_rows=t + 1,
        )
        if self.store_state:
            def last_row(rec, s):
                rec[j, t] = np.asarray(s[j])
                return rec[j].copy()

            ep["state"] = jax.tree.map(last_row, self.rec_state, state_after)
        return ep


def _stack(episodes: list[dict], rows: int) -> Episodes:
    """Stack episode dicts into an Episodes batch padded to a power-of-two count (few jit shapes)."""
    e = 1 << (len(episodes) - 1).bit_length()
    pad = e - len(episodes)

    def stack(*xs):
        arr = np.stack(xs)
        return np.concatenate([arr, np.zeros((pad,) + arr.shape[1:], arr.dtype)]) if pad else arr

    fields = ("obs", "action", "reward", "reset", "n_rows", "state")
    data = jax.tree.map(stack, *[{k: ep[k] for k in fields if k in ep} for ep in episodes])
    return Episodes(
        obs=data["obs"], action=data["action"], reward=data["reward"], reset=data["reset"],
        n_rows=data["n_rows"].astype(np.int32), terminated=np.zeros(e, bool), state=data.get("state"),
    )


def evaluate(network, params, task, task_kwargs, spec: EpisodeSpec, num_envs, seed, num_trials, chunk=64):
    """Greedy policy on separately seeded envs (the same envs every call) for `num_trials` trials.

    Returns dict(performance=fraction of correct trials as neurogym defines it,
    reward_per_trial=mean reward per trial, trials=number of trials)."""
    col = HostCollector(task, task_kwargs, num_envs, seed, 1, network, spec)
    key = jax.random.PRNGKey(0)  # unused: epsilon is 0
    perf, rew = [], []
    while sum(len(p) for p in perf) < num_trials:
        _, st = col.run(params, chunk, 0.0, key, record=False)
        perf.append(st.performance)
        rew.append(st.reward)
    p = np.concatenate(perf)[:num_trials]
    r = np.concatenate(rew)[:num_trials]
    return dict(performance=float(p.mean()), reward_per_trial=float(r.mean()), trials=int(len(p)))
