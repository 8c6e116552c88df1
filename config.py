"""Experiment configuration: the one schema (defaults, types, ranges, meaning), loading YAML files,
--set overrides and validation.

Every problem is reported as one ConfigError line naming the file, the key and what is wrong; the
entry points turn it into a message on stderr and exit status 2.
"""
from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from memory import MODELS  # the registry of the memory models (imports no JAX)


class ConfigError(Exception):
    """A bad experiment file, key, value or override."""


@dataclass(frozen=True)
class Opt:
    """One leaf of the schema. types: accepted Python types (None in the tuple allows null);
    check: returns an error string or None; free: a mapping passed through to a library that
    checks it (neurogym, the memory model)."""

    default: Any
    types: tuple
    doc: str
    check: Callable[[Any], str | None] | None = None
    top: int = 2**31 - 1  # largest integer accepted: integers become 32-bit in JAX (no x64)


def _positive(v):
    return None if v is None or v > 0 else "must be > 0"


def _nonneg(v):
    return None if v is None or v >= 0 else "must be >= 0"


def _unit(v):
    return None if 0.0 <= v <= 1.0 else "must lie in [0, 1]"


def _unit_open(v):
    return None if 0.0 <= v < 1.0 else "must lie in [0, 1)"


def _folder_name(v):
    # the name becomes a folder under runs/: one plain path component, nothing that leaves it
    if not v or v in (".", "..") or len(v) > 100:
        return "must be a folder name of 1 to 100 characters (not . or ..)"
    if any(c in v for c in "/\\") or any(ord(c) < 32 for c in v):
        return "must be a plain folder name (no / or \\, no control characters)"
    return None


def _max_steps(v):
    if isinstance(v, str):
        return None if v == "auto" else "must be a number of steps or auto"
    return _positive(v)


def _n_step(v):
    # the loss unrolls n_step shifted copies of the batch: keep it to what a return can use
    return None if 1 <= v <= 64 else "must lie in [1, 64]"


def _layers(v):
    return None if all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v) else "must be a list of positive ints"


def _one_of(*choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


INT, FLOAT, NUM = (int,), (float,), (int, float)
SCHEMA: dict = {
    "name": Opt(None, (str, type(None)), "Experiment name, used for the run folder (default: the YAML file's stem).", _folder_name),
    "seed": Opt(0, INT, "Seed of parameters, exploration, buffer sampling and training envs.", _nonneg, top=2**32 - 1),
    "env": {
        "task": Opt("PerceptualDecisionMaking-v0", (str,), "NeuroGym task id (any task with discrete actions)."),
        "kwargs": Opt({}, (dict,), "Keyword arguments for neurogym.make: dt, sigma, timing, rewards, ... as neurogym names them."),
        "num_envs": Opt(16, INT, "Training envs stepped in lockstep.", _positive),
        "backend": Opt("jax", (str,), "jax: the pure-JAX port of the task, whole training iterations in one jit; neurogym: the real neurogym envs stepped in Python (any task).", _one_of("jax", "neurogym")),
    },
    "episode": {
        "trials": Opt(5, (int, type(None)), "An RL episode ends (by truncation) after this many finished trials; null: by steps only.", _positive),
        "max_steps": Opt("auto", (int, str), "... or after at most this many steps, whichever comes first. auto: episode.trials times the longest trial of the task under the run's settings (measured at start), so that no episode ends inside a trial; a number that can end episodes inside a trial is said in one warning line at start.", _max_steps),
        "reset_memory_on_trial": Opt(True, (bool,), "Also reset the memory state at every trial boundary (else only at episode starts)."),
    },
    "model": {
        "memory": Opt("mpn", (str,), "Memory model: " + ", ".join(f"{s.name} ({s.description})" for s in MODELS[:-1])
                      + f" or {MODELS[-1].name} ({MODELS[-1].description})."),
        "memory_kwargs": Opt({}, (dict,), "Keyword arguments of the memory model (see memory/*.py), e.g. hidden, eta_init, lam_max, input_proj, input_bias; keys not given take the model's tuned defaults (the registry in memory/__init__.py)."),
        "head": Opt([64], (list,), "Hidden layer sizes of the MLP Q-head on top of the memory.", _layers),
    },
    "train": {
        "total_env_steps": Opt(100_000, INT, "Environment steps to train for (all envs together).", _positive),
        "steps_per_iter": Opt(16, INT, "Vector steps collected per iteration (each is num_envs env steps).", _positive),
        "updates_per_iter": Opt(4, INT, "Gradient updates per iteration; with steps_per_iter and the batch size this sets the replay ratio.", _positive),
        "learning_starts": Opt(2000, INT, "Env steps collected before the first update.", _nonneg),
        "buffer_capacity": Opt(50_000, INT, "Replay capacity in rows (transitions plus one final-observation row per episode).", _positive),
        "gamma": Opt(0.9, NUM, "Discount factor.", _unit_open),
        "n_step": Opt(1, INT, "Transitions of reward summed before bootstrapping (n-step returns, cut at episode ends).", _n_step),
        "lr": Opt(2e-3, NUM, "Adam learning rate.", _positive),
        "lr_end": Opt(2e-4, (int, float, type(None)), "Learning rate reached at the last update, decaying linearly from lr; null: constant lr.", _positive),
        "lr_decay_start": Opt(0.5, NUM, "Fraction of the run's updates at lr before the decay to lr_end begins.", _unit_open),
        "grad_clip": Opt(10.0, NUM, "Global gradient-norm clip.", _positive),
        "huber_delta": Opt(1.0, NUM, "Huber loss threshold.", _positive),
        "target_mode": Opt("hard", (str,), "Target network update: hard (copy every target_period updates) or polyak.", _one_of("hard", "polyak")),
        "target_period": Opt(100, INT, "Updates between hard target copies.", _positive),
        "target_tau": Opt(0.005, NUM, "Polyak rate of the target network.", _unit),
        "eps_start": Opt(1.0, NUM, "Initial exploration rate ε.", _unit),
        "eps_end": Opt(0.05, NUM, "Final exploration rate ε.", _unit),
        "eps_decay_steps": Opt(30_000, INT, "Env steps over which ε decays linearly.", _positive),
    },
    "tape": {
        "size": Opt(1024, INT, "Tape length in rows (tape_dqn): whole episodes packed end to end.", _positive),
        "max_episodes": Opt(None, (int, type(None)), "Most episodes tried per tape (default size // 2).", _positive),
        "lanes": Opt(1, INT, "Lanes K: whole episodes packed into K lanes of size / K rows each, run side by side (1: one tape).", _positive),
    },
    "segment": {
        "length": Opt(10, INT, "Segment length L in transitions (segment_dqn).", _positive),
        "batch_size": Opt(100, INT, "Segments per batch B.", _positive),
        "burn_in": Opt(0, INT, "Rows before each segment run without gradient to build the state (R2D2).", _nonneg),
        "stored_state": Opt(False, (bool,), "Start each window from the memory state stored at collection time (R2D2); false: zero state (DRQN)."),
        "stride": Opt(None, (int, type(None)), "Segment starts every stride transitions of an episode (default L).", _positive),
    },
    "checkpoint": {
        "every_updates": Opt(500, INT, "Write checkpoint.pkl (train state, buffer, PRNG keys, counters, config) every this many updates (0: only at the end and on SIGINT/SIGTERM); --resume continues from it.", _nonneg),
    },
    "eval": {
        "every_env_steps": Opt(5_000, INT, "Evaluate (and write a metrics.csv row) every this many env steps.", _positive),
        "trials": Opt(2000, INT, "Trials per periodic greedy evaluation.", _positive),
        "final_trials": Opt(2000, INT, "Trials of the final greedy evaluation (summary.json).", _positive),
        "num_envs": Opt(128, INT, "Evaluation envs (seeded apart from the training envs).", _positive),
        "target": Opt(None, (float, int, type(None)), "Performance threshold: summary.json reports the env steps and wall time to first reach it.", _unit),
    },
}


def defaults(schema: dict = SCHEMA) -> dict:
    return {k: (copy.deepcopy(v.default) if isinstance(v, Opt) else defaults(v)) for k, v in schema.items()}


def iter_options(schema: dict = SCHEMA, prefix: str = ""):
    """(dotted key, Opt) for every leaf, in schema order (used for the README table)."""
    for k, v in schema.items():
        if isinstance(v, Opt):
            yield prefix + k, v
        else:
            yield from iter_options(v, prefix + k + ".")


def _suggest(key: str, choices) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _merge(base: dict, override: dict, schema: dict, where: str, path: str = "") -> None:
    if not isinstance(override, dict):
        raise ConfigError(f"{where}: {path.rstrip('.') or 'top level'}: expected a mapping, got {type(override).__name__}")
    for k, v in override.items():
        key = path + str(k)
        if k not in schema:
            raise ConfigError(f"{where}: unknown key '{key}'{_suggest(str(k), schema)}")
        spec = schema[k]
        if isinstance(spec, Opt):
            base[k] = _checked(v, spec, key, where)
        else:
            _merge(base[k], v, spec, where, key + ".")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {short(key)} is given twice (lines {seen[key] + 1} and "
                        f"{key_node.start_mark.line + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: PyYAML's own error follows
                pass
        return super().construct_mapping(node, deep)


def safe_load(text: str):
    """yaml.safe_load, but a key given twice in one mapping is an error (yaml.YAMLError)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _free_values(v, key: str, where: str) -> None:
    """The values of a mapping passed on to a library (env.kwargs, model.memory_kwargs): no NaN
    or infinity anywhere, no negative duration in env.kwargs.timing."""
    stack = [(v, key)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            stack.extend((x, f"{at}.{k}") for k, x in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((x, f"{at}[{i}]") for i, x in enumerate(node))
        elif isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{where}: {at}: must be a finite number, got {short(node)}")
        elif at.startswith("env.kwargs.timing") and isinstance(node, (int, float)) and not isinstance(node, bool) \
                and node < 0:
            raise ConfigError(f"{where}: {at}: a duration must be >= 0 ms, got {short(node)}")


def _checked(v, spec: Opt, key: str, where: str):
    if isinstance(v, str) and float in spec.types:
        try:  # YAML 1.1 reads 3e-4 (no dot) as a string
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, bool) and bool not in spec.types:
        raise ConfigError(f"{where}: {key}: expected {_type_names(spec)}, got {short(v)}")
    if isinstance(v, int) and not isinstance(v, bool) and float in spec.types and int not in spec.types:
        v = float(v)
    if not isinstance(v, spec.types):
        raise ConfigError(f"{where}: {key}: expected {_type_names(spec)}, got {type(v).__name__} {short(v)}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{where}: {key}: must be a finite number, got {short(v)}")
    if isinstance(v, int) and not isinstance(v, bool) and not -2**31 <= v <= spec.top:
        bound = f"at most {spec.top}" if v > 0 else f"at least {-2**31}"
        raise ConfigError(f"{where}: {key}: must be {bound} (it becomes a 32-bit integer), got {short(v)}")
    if isinstance(v, dict):
        _free_values(v, key, where)
    if v is not None and spec.check is not None:
        problem = spec.check(v)
        if problem:
            raise ConfigError(f"{where}: {key}: {problem}, got {short(v)}")
    return v


def _type_names(spec: Opt) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list", dict: "a mapping", type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in spec.types))


# The tuned values (see the README's tuning record) that a memory model gets for every keyword the
# experiment does not set; a file that names only env.task trains the tuned agent. They live in the
# registry, one line per model (memory/__init__.py).
MEMORY_DEFAULTS = {s.name: dict(s.defaults) for s in MODELS}

MAX_DEPTH = 32  # deepest nesting a config file may have (the schema needs 3 levels)
MAX_VALUES = 100_000  # values in a file once YAML aliases are expanded (an alias bomb has billions)


def short(v, limit: int = 80) -> str:
    """repr(v) cut to `limit` characters, so that an error line stays one readable line."""
    try:
        text = repr(v)
    except RecursionError:
        text = f"<a {type(v).__name__} nested too deeply>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(e: Exception) -> str:
    """An exception's first line, cut short for a one-line error."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return short(text, 200).strip("'\"")


def _size_check(raw, where: str) -> None:
    """Refuse a tree nested deeper than MAX_DEPTH or with more than MAX_VALUES values after
    expanding aliases (YAML aliases share nodes, so a small file can stand for a huge tree)."""
    count = 0
    stack = [(raw, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if count > MAX_VALUES:
            raise ConfigError(f"{where}: more than {MAX_VALUES} values once YAML aliases are expanded")
        if isinstance(node, dict):
            stack.extend((x, depth + 1) for kv in node.items() for x in kv)
        elif isinstance(node, (list, tuple)):
            stack.extend((x, depth + 1) for x in node)


def load(path: str | Path, overrides: list[str] = ()) -> dict:
    """Defaults, then the YAML file, then `--set key.sub=value` overrides; validated."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"{where}: no such file")
    try:
        raw = safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{where}: not valid YAML: {short(first, 200)}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read it: {e.strerror or e}") from None
    if raw is None or raw == {}:
        raise ConfigError(f"{where}: the experiment file is empty; it must set at least env.task")
    _size_check(raw, where)
    cfg = defaults()
    _merge(cfg, raw, SCHEMA, where)
    for item in overrides:
        apply_override(cfg, item)
    if cfg["name"] is None:
        cfg["name"] = path.stem
    m = cfg["model"]
    m["memory_kwargs"] = {**MEMORY_DEFAULTS.get(m["memory"], {}), **m["memory_kwargs"]}
    check(cfg, where)
    return cfg


def from_mapping(raw: Any, where: str) -> dict:
    """A resolved config read back (e.g. from a checkpoint), validated like a file."""
    _size_check(raw, where)
    cfg = defaults()
    _merge(cfg, raw, SCHEMA, where)
    check(cfg, where)
    check_resolved(cfg, where)
    return cfg


def check_resolved(cfg: dict, where: str) -> None:
    """A run's own config (its config.yaml, its checkpoint) holds the measured episode cap."""
    if not isinstance(cfg["episode"]["max_steps"], int):
        raise ConfigError(f"{where}: episode.max_steps: a run records the number of steps it measured, "
                          f"not {short(cfg['episode']['max_steps'])}")


def apply_override(cfg: dict, item: str) -> None:
    """Apply one 'key.sub=value' override (value parsed as YAML) in place."""
    where = f"--set {short(item, 120)}"
    if "=" not in item:
        raise ConfigError(f"{where}: expected key.sub=value")
    dotted, text = item.split("=", 1)
    try:
        value = safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError):
        raise ConfigError(f"{where}: value is not valid YAML") from None
    _size_check(value, where)
    keys = dotted.strip().split(".")
    node, spec = cfg, SCHEMA
    for i, k in enumerate(keys[:-1]):
        opt = spec.get(k) if isinstance(spec, dict) else None
        if isinstance(opt, Opt) and dict in opt.types and isinstance(node.get(k), dict):
            # a free mapping (model.memory_kwargs, env.kwargs): set one entry, keep the others
            inner = merged = copy.deepcopy(node[k])
            for j in range(i + 1, len(keys) - 1):
                inner = inner.setdefault(keys[j], {})
                if not isinstance(inner, dict):
                    raise ConfigError(f"{where}: '{'.'.join(keys[:j + 1])}' is not a mapping")
            inner[keys[-1]] = value
            keys, value = keys[:i + 1], merged
            break
        if not isinstance(opt, dict):
            break
        node, spec = node[k], opt
    nested: Any = value
    for k in reversed(keys):
        nested = {k: nested}
    _merge(cfg, nested, SCHEMA, "--set")


def _finite(v):
    return None if v is None or math.isfinite(v) else "must be a finite number"


def _lam_max(v):
    return None if 0.0 < v <= 1.0 else "must lie in (0, 1]"


# Ranges of the memory models' keywords (make_memory checks the names; these check the values).
MEMORY_KWARGS = {
    "hidden": Opt(None, INT, "", _positive),
    "input_proj": Opt(None, INT, "", _nonneg),
    "input_bias": Opt(None, (bool,), ""),
    "eta_init": Opt(None, NUM + (type(None),), "", _finite),
    "lam_max": Opt(None, NUM, "", _lam_max),
    "lam_init": Opt(None, NUM + (type(None),), "", lambda v: None if v is None or 0.0 <= v <= 1.0 else "must lie in [0, 1]"),
    "m_clamp": Opt(None, NUM + (type(None),), "", lambda v: None if v is None or (math.isfinite(v) and v > 0) else "must be > 0 (or null: no clamp)"),
    "scan": Opt(None, (str,), "", _one_of("sequential", "parallel", "auto")),
    "newton_iters": Opt(None, INT, "", _positive),
    "tol": Opt(None, NUM + (type(None),), "", lambda v: None if v is None or (math.isfinite(v) and v > 0) else "must be > 0 (or null: the default)"),
}


def check(cfg: dict, where: str) -> None:
    """Checks that involve several keys or outside registries."""
    from collector.tasks import JAX_TASKS  # the registry of the ports (imports no JAX)
    from memory import MEMORY_NAMES

    task = cfg["env"]["task"]
    # every port is a registered neurogym task: a jax run of a ported task need not import neurogym
    # (about a second of start-up: matplotlib, scipy)
    if not (cfg["env"]["backend"] == "jax" and task in JAX_TASKS):
        from collector.ngym_compat import registered_tasks

        tasks = registered_tasks()
        if task not in tasks:
            raise ConfigError(f"{where}: env.task: unknown NeuroGym task '{task}'{_suggest(task, tasks)}")
    if cfg["env"]["backend"] == "jax":
        if task not in JAX_TASKS:
            raise ConfigError(f"{where}: env.backend: no JAX port of '{task}' (ported: {', '.join(JAX_TASKS)}); use env.backend: neurogym")
    mem = cfg["model"]["memory"]
    if mem not in MEMORY_NAMES:
        raise ConfigError(f"{where}: model.memory: unknown memory model '{mem}'{_suggest(mem, MEMORY_NAMES)}; known: {', '.join(MEMORY_NAMES)}")
    kw = cfg["model"]["memory_kwargs"]
    for k, v in kw.items():
        if k in MEMORY_KWARGS:
            kw[k] = _checked(v, MEMORY_KWARGS[k], f"model.memory_kwargs.{k}", where)
    lam_max, lam_init = kw.get("lam_max", 0.95), kw.get("lam_init")
    if lam_init is not None and lam_init > lam_max:
        raise ConfigError(f"{where}: model.memory_kwargs.lam_init: {lam_init} exceeds lam_max ({lam_max})")
    size, lanes = cfg["tape"]["size"], cfg["tape"]["lanes"]
    if size % lanes:
        raise ConfigError(f"{where}: tape.lanes: {lanes} does not divide tape.size {size}")
    seg, cap = cfg["segment"], cfg["train"]["buffer_capacity"]
    window = seg["burn_in"] + seg["length"] + 1
    if window > cap:
        raise ConfigError(f"{where}: segment.length: a window of burn_in + length + 1 = {window} rows is longer than the buffer ({cap} rows)")
    if cfg["episode"]["max_steps"] == "auto":
        if cfg["episode"]["trials"] is None:
            raise ConfigError(f"{where}: episode.max_steps: auto needs episode.trials (the cap is that many of the "
                              "task's longest trials); give a number of steps")
    else:  # with auto these wait for the cap, which the entry points measure (cli.resolve_episode)
        check_episode_sizes(cfg, where)
    if cfg["train"]["eps_end"] > cfg["train"]["eps_start"]:
        raise ConfigError(f"{where}: train.eps_end: must not exceed train.eps_start")
    tr = cfg["train"]
    per_iter = cfg["env"]["num_envs"] * tr["steps_per_iter"]
    if tr["total_env_steps"] + per_iter > 2**31 - 1:  # the env-step counter is a 32-bit integer
        raise ConfigError(f"{where}: train.total_env_steps: {tr['total_env_steps']} plus one iteration's {per_iter} "
                          "env steps (env.num_envs x train.steps_per_iter) overflows the 32-bit step counter")
    if -(-tr["total_env_steps"] // per_iter) * tr["updates_per_iter"] > 2**31 - 1:
        raise ConfigError(f"{where}: train.updates_per_iter: {tr['updates_per_iter']} updates in each of "
                          f"{-(-tr['total_env_steps'] // per_iter)} iterations overflow the 32-bit update counter")


def check_episode_sizes(cfg: dict, where: str, batching: str | None = None) -> None:
    """The sizes that must hold one whole episode of up to episode.max_steps + 1 rows; with
    batching "tape" the segment length is not checked against it (it is not used)."""
    rows = cfg["episode"]["max_steps"] + 1
    if cfg["tape"]["size"] < rows:
        raise ConfigError(f"{where}: tape.size: {cfg['tape']['size']} rows cannot hold one episode of up to {rows} rows (episode.max_steps + 1)")
    size, lanes = cfg["tape"]["size"], cfg["tape"]["lanes"]
    if size // lanes < rows:
        raise ConfigError(f"{where}: tape.lanes: a lane of {size // lanes} rows (tape.size / tape.lanes) cannot hold one episode of up to {rows} rows (episode.max_steps + 1)")
    cap = cfg["train"]["buffer_capacity"]
    if cap < max(cfg["tape"]["size"], rows):
        raise ConfigError(f"{where}: train.buffer_capacity: {cap} rows is smaller than the tape ({cfg['tape']['size']}) or one episode ({rows})")
    if batching != "tape" and cfg["segment"]["length"] > cfg["episode"]["max_steps"]:
        raise ConfigError(
            f"{where}: segment.length: {cfg['segment']['length']} is longer than the longest episode "
            f"(episode.max_steps = {cfg['episode']['max_steps']}): every segment would be mostly padding"
        )
