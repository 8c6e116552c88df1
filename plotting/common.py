"""Shared helpers of the plotting commands: finding and loading run folders, rebuilding a trained
network, grouping runs into curves, task reference lines and bootstrap confidence intervals.

Nothing here imports JAX at module level (only `load_params` does, when called), so the plotting
commands that only read CSV files start quickly.

Every problem with the input (a path that is not a run folder, a missing or malformed file) is
raised as `PlotError` with a one-line message; the commands print it on stderr and exit with 2.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from collector.tasks import TASK_META  # the one task table (imports no JAX)

# (random-policy performance, ceiling) of each task at its defaults, for the reference lines; the
# ceiling is an ideal observer's or a scripted policy's (TASK_META[task].ceiling_by)
TASK_BASELINES = {t: (m.random, m.ceiling) for t, m in TASK_META.items() if m.ceiling is not None}

from runs import REQUIRED_COLUMNS, RUN_FILE  # the run folder's schema (runs.py; imports no JAX)
SUMMARY_FIELDS = {"final_eval_performance": (int, float)}  # what the tables read without a default
# fields read where present: a value of another type is refused (None: the field may be null)
OPTIONAL_SUMMARY_FIELDS = {
    "seeds_in_program": (int,), "env_steps": (int,), "updates": (int,), "wall_s": (int, float),
    "final_eval_reward_per_trial": (int, float, type(None)), "final_eval_trials": (int,), "seed": (int,),
    "target": (int, float, type(None)), "target_reached_env_steps": (int, type(None)),
    "target_reached_wall_s": (int, float, type(None)), "eval_trials": (int,),
    "experiment": (str,), "batching": (str,), "backend": (str,), "task": (str,), "memory": (str,),
}
RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "params.msgpack")


class PlotError(Exception):
    """Bad input to a plotting command: the message is one line meant for the user."""


# what matplotlib's Agg canvas writes; a figure named with any other suffix is refused up front
FIGURE_TYPES = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp", "pgf", "raw", "rgba")
MAX_SIM_ENVS = 4096  # envs a plotting command simulates side by side
SEED_MAX = 2**32 - 1  # a PRNG seed is a 32-bit unsigned integer


def check_figure(path, flag: str) -> Path:
    """A figure file named on the command line: a type matplotlib writes (a name without a suffix
    is left to the caller), checked before any work."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix and suffix not in FIGURE_TYPES:
        raise PlotError(f"{flag} {path}: unknown figure type .{suffix}; use .png, .pdf or .svg "
                        f"(or one of {', '.join(FIGURE_TYPES[3:])})")
    return path


def check_writable(path: Path, flag: str) -> None:
    """Fail early (PlotError) when `path` cannot be written: a folder, a parent that cannot be
    created, or a file that cannot be opened for writing (tried, and removed again if new)."""
    path = Path(path)
    if path.is_dir():
        raise PlotError(f"{flag} {path}: is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PlotError(f"{flag} {path}: cannot create its folder: {e.strerror or _first_line(e)}") from None
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as e:
        raise PlotError(f"{flag} {path}: not writable: {e.strerror or _first_line(e)}") from None
    if not existed:
        path.unlink()


def check_simulation(trials: int, max_trials: int, seed: int, num_envs: int) -> None:
    """--trials, --seed and --num-envs of a command that simulates a trained policy."""
    if not 1 <= trials <= max_trials:
        raise PlotError(f"--trials must be between 1 and {max_trials}, got {trials}")
    if not 1 <= num_envs <= MAX_SIM_ENVS:
        raise PlotError(f"--num-envs must be between 1 and {MAX_SIM_ENVS}, got {num_envs}")
    if not 0 <= seed <= SEED_MAX:
        raise PlotError(f"--seed must be between 0 and {SEED_MAX}, got {seed}")


def use_agg() -> None:
    """Select matplotlib's non-interactive Agg backend (call before importing pyplot)."""
    import matplotlib

    matplotlib.use("Agg")


def cli_error(prog: str, message: str) -> int:
    """Print `prog: error: message` as one line on stderr and return exit status 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------------------------
# Run folders
# ------------------------------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    """A run folder holds at least one of the files a run writes (config.yaml comes first)."""
    return path.is_dir() and any((path / f).is_file() for f in RUN_FILES)


def find_runs(paths) -> list[Path]:
    """The run folders named by `paths`: each path is a run folder, or a folder with run folders
    somewhere below it (e.g. DIR/seed0/, DIR/seed1/, or runs/ holding several runs). Sorted
    within each path, duplicates removed. Raises PlotError for a path that is neither."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise PlotError(f"{p}: no such file or folder")
        if not p.is_dir():
            raise PlotError(f"{p}: not a folder (expected a run folder or a folder of run folders)")
        if is_run_dir(p):
            runs = [p]
        else:
            runs = sorted((d for d in p.rglob("*") if is_run_dir(d)), key=_natural_key)
            # a run folder's own subfolders are not runs
            runs = [d for d in runs if not any(a in runs for a in d.parents)]
        if not runs:
            raise PlotError(f"{p}: not a run folder (no {', '.join(RUN_FILES[:3])}) and holds no run folders")
        for r in runs:
            if r.resolve() not in {f.resolve() for f in found}:
                found.append(r)
    return found


def _natural_key(path: Path):
    """Sort seed2 before seed10."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def load_config(run_dir) -> dict:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise PlotError(f"{run_dir}: no config.yaml (not a complete run folder)")
    try:
        cfg = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise PlotError(f"{path}: not valid YAML: {_first_line(e)}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("env"), dict) or "task" not in cfg["env"]:
        raise PlotError(f"{path}: not a run configuration (no env.task)")
    cap = (cfg.get("episode") or {}).get("max_steps", 0) if isinstance(cfg.get("episode"), dict) else 0
    if not isinstance(cap, int) or isinstance(cap, bool):
        raise PlotError(f"{path}: episode.max_steps: a run records the number of steps it measured, not {cap!r}")
    return cfg


def load_metrics(run_dir) -> dict[str, np.ndarray]:
    """metrics.csv as {column: float array [rows]} (empty cells are NaN). Raises PlotError when the
    file is missing, has no header, lacks env_steps / wall_s / eval_performance, or holds a value
    that is not a number."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise PlotError(f"{run_dir}: no metrics.csv")
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError, OSError) as e:
        raise PlotError(f"{path}: malformed CSV: {_first_line(e)}") from None
    if not header:
        raise PlotError(f"{path}: malformed CSV: empty file, no header")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise PlotError(f"{path}: malformed CSV: missing column(s) {', '.join(missing)} (header: {','.join(header)})")
    cols: dict[str, list[float]] = {h: [] for h in header}
    for i, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise PlotError(f"{path}: malformed CSV: line {i} has {len(row)} fields, the header {len(header)}")
        for h, cell in zip(header, row):
            cell = cell.strip()
            try:
                cols[h].append(float(cell) if cell else math.nan)
            except ValueError:
                raise PlotError(f"{path}: malformed CSV: line {i}, column {h}: {cell!r} is not a number") from None
    out = {h: np.asarray(v, dtype=float) for h, v in cols.items()}
    if np.isnan(out["env_steps"]).any():
        raise PlotError(f"{path}: malformed CSV: a row has no env_steps")
    return out


def load_summary(run_dir) -> dict | None:
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise PlotError(f"{path}: not valid JSON: {_first_line(e)}") from None
    if not isinstance(summary, dict):
        raise PlotError(f"{path}: expected a JSON object")
    for key, kinds in SUMMARY_FIELDS.items():
        if not isinstance(summary.get(key), kinds) or isinstance(summary.get(key), bool):
            raise PlotError(f"{path}: field '{key}' is missing or not a number")
    for key, kinds in OPTIONAL_SUMMARY_FIELDS.items():
        v = summary.get(key)
        if key in summary and (not isinstance(v, kinds) or isinstance(v, bool)):
            names = "/".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise PlotError(f"{path}: field '{key}' must be {names}, got {type(v).__name__}")
    return summary


def load_run(run_dir) -> dict:
    """dict(cfg, metrics {column: array [rows]}, summary (None while the run has not finished),
    path) of one run folder."""
    run_dir = Path(run_dir)
    return dict(cfg=load_config(run_dir), metrics=load_metrics(run_dir), summary=load_summary(run_dir), path=run_dir)


def load_params(run_dir):
    """(cfg, network, params) of a finished run: the QNetwork rebuilt from config.yaml with the
    task's action count (learner.build_network), params.msgpack restored against a template from
    network.init."""
    import jax
    import jax.numpy as jnp
    from flax import serialization

    from config import ConfigError
    from learner import build_network

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    path = run_dir / "params.msgpack"
    if not path.is_file():
        raise PlotError(f"{run_dir}: no params.msgpack (the run has not finished)")
    num_actions, obs_dim = task_shape(cfg)
    try:
        network = build_network(cfg, num_actions)
    except ConfigError as e:
        raise PlotError(f"{run_dir}/config.yaml: {e}") from None
    # the template's structure, shapes and dtypes from network.init, traced abstractly (no compile)
    template = jax.eval_shape(network.init, jax.random.PRNGKey(0), jnp.zeros((1, obs_dim)), jnp.ones((1,), bool))
    try:
        restored = serialization.from_bytes(template, path.read_bytes())
    except Exception as e:  # msgpack / structure mismatch: report in one line
        raise PlotError(f"{path}: does not match the network of config.yaml: {_first_line(e)}") from None
    want = jax.tree_util.tree_flatten_with_path(template)[0]
    got = jax.tree.leaves(restored)
    if len(want) != len(got):
        raise PlotError(f"{path}: holds {len(got)} arrays, the network of config.yaml has {len(want)}")
    for (where, t), a in zip(want, got):
        if np.shape(a) != t.shape:
            raise PlotError(f"{path}: {jax.tree_util.keystr(where)} has shape {np.shape(a)}, the network of "
                            f"config.yaml expects {t.shape}")
    params = jax.tree.map(lambda t, a: jnp.asarray(a, t.dtype), template, restored)
    return cfg, network, params


def task_shape(cfg: dict) -> tuple[int, int]:
    """(number of actions, observation size) of the run's task: from the JAX port when there is
    one, else from a real neurogym env (via collector.ngym_compat)."""
    task, kwargs = cfg["env"]["task"], cfg["env"].get("kwargs") or {}
    from collector.jax_envs import JAX_TASKS, make_jax_env

    try:
        if task in JAX_TASKS:
            env, _ = make_jax_env(task, **kwargs)
            return env.num_actions, env.obs_dim
        from collector.ngym_compat import make_env

        env = make_env(task, **kwargs)
        return int(env.action_space.n), int(np.prod(env.observation_space.shape))
    except (ValueError, TypeError) as e:
        raise PlotError(f"env: {task}: {_first_line(e)}") from None


# ------------------------------------------------------------------------------------------------
# Groups
# ------------------------------------------------------------------------------------------------
def batching_of(cfg: dict, summary: dict | None = None, run_dir=None) -> str:
    """'tape' or 'segment': as the run folder's run.json records it (every run folder written by this
    version has one); for folders of earlier versions summary.json's 'batching', else deduced from
    the config (its experiment name, then which of the tape / segment sections is not the default)."""
    if run_dir is not None:
        recorded = _recorded_batching(Path(run_dir))
        if recorded:
            return recorded
    if summary and summary.get("batching") in ("tape", "segment"):
        return summary["batching"]
    name = str(cfg.get("name") or "").lower()
    for mode in ("segment", "tape"):
        if name.startswith(mode) or f"_{mode}" in name or f"-{mode}" in name:
            return mode
    import config as config_mod

    default = config_mod.defaults()
    seg_changed = cfg.get("segment") not in (None, default["segment"])
    tape_changed = cfg.get("tape") not in (None, default["tape"])
    if seg_changed and not tape_changed:
        return "segment"
    if tape_changed and not seg_changed:
        return "tape"
    return "unknown"


def _recorded_batching(run_dir: Path) -> str | None:
    """run.json's batching mode, from the seed folder or the program folder above it."""
    for d in (run_dir, run_dir.parent):
        try:
            info = json.loads((d / RUN_FILE).read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if isinstance(info, dict) and info.get("batching") in ("tape", "segment"):
            return info["batching"]
    return None


def group_label(cfg: dict, summary: dict | None = None, run_dir=None) -> str:
    """The curve a run belongs to, e.g. "tape · mpn", "segment L=10 R2D2 (burn-in 5) · mpn",
    "segment L=50 DRQN · gru" (R2D2: windows start from the stored memory state; DRQN: from the
    initial state). Runs of the neurogym backend get a "[neurogym]" suffix (their wall time is
    not comparable)."""
    batching = batching_of(cfg, summary, run_dir)
    memory = (summary or {}).get("memory") or cfg.get("model", {}).get("memory", "?")
    if batching == "segment":
        seg = cfg.get("segment", {})
        mode = "R2D2" if seg.get("stored_state") else "DRQN"
        head = f"segment L={seg.get('length')} {mode}"
        if seg.get("burn_in"):
            head += f" (burn-in {seg['burn_in']})"
        stride = seg.get("stride")
        if stride is not None and stride != seg.get("length"):
            head += f" stride {stride}"
    else:
        head = batching
    label = f"{head} · {memory}"
    backend = (summary or {}).get("backend") or cfg.get("env", {}).get("backend", "jax")
    if backend != "jax":
        label += f" [{backend}]"
    return label


def _setting_key(cfg: dict, batching: str) -> tuple:
    """The config settings that tell groups apart: everything but the seed, the name, the
    evaluation and checkpoint settings, the training length and the other batching mode's section."""
    import config as config_mod

    unused = "tape." if batching == "segment" else "segment." if batching == "tape" else None

    def ignored(k: str) -> bool:
        return (k in ("seed", "name", "train.total_env_steps") or k.startswith(("eval.", "checkpoint."))
                or (unused is not None and k.startswith(unused)))

    # keys a run's config lacks (written before the key existed) count as their defaults
    flat = {**_flatten(config_mod.defaults()), **_flatten(cfg)}
    return tuple(sorted((k, v) for k, v in flat.items() if not ignored(k)))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("kwargs", "memory_kwargs"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True, default=str)
    return out


def group_runs(runs: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """{task: {label: [runs]}} for loaded runs (load_run dicts). Runs with the same label but other
    differing settings (e.g. train.lr) are split into separate groups whose labels name the
    differing keys, e.g. "tape · mpn, lr=0.0003"."""
    by_task: dict[str, dict[str, list[dict]]] = {}
    for run in runs:
        task = run["cfg"]["env"]["task"]
        label = group_label(run["cfg"], run["summary"], run["path"])
        by_task.setdefault(task, {}).setdefault(label, []).append(run)
    out: dict[str, dict[str, list[dict]]] = {}
    for task in sorted(by_task):
        out[task] = {}
        for label in sorted(by_task[task]):
            members = by_task[task][label]
            subgroups: dict[tuple, list[dict]] = {}
            for run in members:
                subgroups.setdefault(_setting_key(run["cfg"], batching_of(run["cfg"], run["summary"], run["path"])), []).append(run)
            if len(subgroups) == 1:
                out[task][label] = members
                continue
            keys = [dict(k) for k in subgroups]
            differing = sorted(k for k in set().union(*keys) if len({kk.get(k) for kk in keys}) > 1)
            for setting, group in subgroups.items():
                s = dict(setting)
                extra = ", ".join(f"{k.split('.')[-1]}={_short(s.get(k))}" for k in differing)
                out[task][f"{label}, {extra}"] = group
    return out


def _short(v) -> str:
    if v is None:
        return "-"
    v = json.loads(v)
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{x}" for k, x in v.items()) + "}"
    return str(v)


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------
def bootstrap_ci(values, n_boot: int = 2000, ci: float = 0.95, seed: int = 0):
    """Percentile bootstrap over seeds of the mean: values [seeds, points] (NaN = seed missing at
    that point) -> (mean, lo, hi), each [points]. With one seed (at a point) lo = hi = mean."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"bootstrap_ci: expected values [seeds, points], got shape {v.shape}")
    present = ~np.isnan(v)
    count = present.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.nansum(v, 0) / np.maximum(count, 1), np.nan)
    if v.shape[0] == 1:
        return mean, mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.shape[0], size=(n_boot, v.shape[0]))
    sample = v[idx]  # [n_boot, seeds, points]
    ok = ~np.isnan(sample)
    n = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.where(n > 0, np.where(ok, sample, 0.0).sum(1) / np.maximum(n, 1), np.nan)
    alpha = (1.0 - ci) / 2.0
    lo = np.full(v.shape[1], np.nan)
    hi = np.full(v.shape[1], np.nan)
    for j in range(v.shape[1]):
        b = boot[:, j][~np.isnan(boot[:, j])]
        if count[j] == 1:
            lo[j] = hi[j] = mean[j]
        elif b.size:
            lo[j], hi[j] = np.quantile(b, [alpha, 1.0 - alpha])
    # the percentile interval always contains the sample mean up to rounding; make it exact
    lo = np.minimum(lo, mean)
    hi = np.maximum(hi, mean)
    return mean, lo, hi


def wilson_ci(k, n, ci: float = 0.95):
    """Wilson score interval of a binomial proportion k / n (NaN where n = 0)."""
    from statistics import NormalDist

    k, n = np.asarray(k, float), np.asarray(n, float)
    z = NormalDist().inv_cdf(0.5 + ci / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        lo, hi = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
    lo = np.where(n > 0, np.minimum(lo, p), np.nan)
    hi = np.where(n > 0, np.maximum(hi, p), np.nan)
    return lo, hi


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
