"""How a trained network solves its task: hidden activity, memory state and what they encode.

    python -m plotting.dynamics RUN_DIR [--trials N] [--out FIG.png] [--data OUT.npz] [--seed S] [--num-envs E]

RUN_DIR is a run folder or a folder of run folders of one task and memory model (e.g. the output
of `--seeds K`). For each run the greedy policy (ε = 0) of its saved parameters acts on fresh envs
seeded apart from training and evaluation (the JAX port of the task on the jax backend, the real
neurogym envs on the neurogym backend), with the run's episode rules (collector/episode.py), and
every step of the first N trials to finish is recorded (each env's first trial left out, as in the
training statistics). One figure shows

(a) the hidden activity h in its first two principal components (PCA over every recorded step):
    the mean trajectory of each condition (the task variable that must be remembered) with the
    start of each trial period marked, over faint single trials;
(b) the same for the memory state (the model's `state_name`: M for mpn, m for mpn_pre; left out
    when the memory state is h itself, as for gru);
(c) time-resolved, 5-fold cross-validated linear decoding accuracy (scikit-learn: standardised
    features, ridge classifier) of that variable and of the upcoming choice, from h and from the
    memory state, each step aligned to the start of its trial period, with the chance level (the
    majority class's share of the trials decoded at that step);
(d) the learned η and λ and the Frobenius norm of the memory state over the trial (models that are
    `plastic` and have a state of their own: mpn, mpn_pre).

The numbers behind the figure (per aligned step: decoding accuracies, chance, the memory's norm;
per run: accuracy, η, λ) go to the figure's stem with .json.

Aligned time: the steps of every period are counted from the start of that period, and a step k of
period p is shown when at least half the trials (and at least MIN_BIN_TRIALS) reach it, so that
variable period lengths (e.g. ContextDecisionMaking's delay) and trials ended by the response are
handled alike. With several runs, decoding accuracy is averaged over runs (thin lines: each run),
the norm of the memory state is drawn per run, and the PCA panels show the first run (each run's
network has its own state space).

--data OUT.npz (one run) or OUT_<run>.npz (one file per run, <run> the run folder's name) holds,
for N trials padded to T = the longest recorded trial (np.load(path) gives a dict of arrays):

    obs      float32 [N, T, D]   observation acted on at each step
    h        float32 [N, T, H]   hidden activity: the memory module's output at the step
    mem      float32 [N, T, ...] memory state after the step: M [N, T, H, Nx] for mpn (h_t read
                                 M_{t-1}; this is M_t), m [N, T, Nx] for mpn_pre, h [N, T, H] for gru
    q        float32 [N, T, A]   Q-values
    action   int32   [N, T]      greedy action (-1 after the trial's end)
    gt       int32   [N, T]      ground truth: the correct action in the decision period, else 0 (-1 after the end)
    period   int8    [N, T]      index into `periods` of the step's trial period (-1 after the end)
    start    bool    [N, T]      the memory state was reset before the step
    valid    bool    [N, T]      the step belongs to the trial (t < length)
    length   int32   [N]         steps of the trial
    choice   int32   [N]         the action that ended the trial in the decision period, 0 = none
    correct  bool    [N]         the trial ended with a correct choice
    trial_<name>     [N]         the task's trial variables as neurogym names them (e.g. trial_ground_truth,
                                 trial_coh; trial_sample_theta, trial_test_theta; trial_context,
                                 trial_coh_1, trial_coh_2, trial_other_choice)
    periods  str [P], trial_variables str [K], task, memory, backend, run, layout (str);
    run_seed, sim_seed; eta, lam (mpn, mpn_pre; NaN for gru)

Bad input (not a run folder, no params.msgpack, a damaged config.yaml, --trials < 1, an output that
cannot be written) stops the command before any work with one line on stderr and exit status 2.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np

from memory import model_class  # the registry (no JAX until a model class is asked for)
from plotting.common import (
    PlotError, _first_line, check_figure, check_simulation, check_writable, cli_error, find_runs, group_label,
    load_summary, use_agg,
)
from jaxenv import import_jax
from oneline import OneLineParser

PROG = "python -m plotting.dynamics"
MIN_BIN_TRIALS = 10  # fewest trials a decoded / averaged step needs
FOLDS = 5
MAX_TRIALS = 5000  # M of 5000 DelayMatchSample trials at hidden 64, Nx 10: ~0.4 GB

# the variable each task must hold until the decision: (trial key, label); other tasks fall back
# to ground_truth, then to the first trial variable with at least two values
REMEMBERED = {
    "PerceptualDecisionMaking-v0": ("ground_truth", "stimulus side"),
    "DelayMatchSample-v0": ("sample_theta", "sample"),
    "ContextDecisionMaking-v0": ("ground_truth", "relevant modality's side"),
}

LAYOUT = ("trials x steps, padded after each trial's end; see `python -m plotting.dynamics --help` "
          "and the docstring of plotting/dynamics.py; mem is the memory state after the step")


# ------------------------------------------------------------------------------------------------
# Rollouts: per-step records [S, E, ...] of E envs, then cut into trials
# ------------------------------------------------------------------------------------------------
def rollout_jax(env, env_params, network, spec, params, key, num_envs: int, num_trials: int, chunk: int = 64) -> dict:
    """Greedy steps of `num_envs` JAX envs until `num_trials` counted trials have finished. Returns
    numpy per-step records [S, E, ...] (plotting.rollout.greedy_step's rec, with h)."""
    import jax

    run = _chunk_runner(env, network, spec, chunk)
    k_reset, key = jax.random.split(key)
    carry = _reset_envs(env, network, num_envs)(env_params, k_reset)
    parts, counted = [], 0
    while counted < num_trials:
        key, sub = jax.random.split(key)
        carry, rec = run(params, env_params, carry, sub)
        rec = jax.device_get(rec)
        parts.append(rec)
        counted += int(np.asarray(rec["counted"]).sum())
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


@functools.lru_cache(maxsize=16)
def _chunk_runner(env, network, spec, chunk: int):
    """jit(params, env_params, carry, key) -> (carry, records [chunk, E, ...]): `chunk` greedy steps.
    Parameters are arguments, not constants, so one compiled program serves every run (and seed)
    of the same shapes."""
    import jax

    from plotting.rollout import greedy_step

    @jax.jit
    def run(params, env_params, c, k):
        step = greedy_step(env, env_params, network, spec, params, hidden=True)
        return jax.lax.scan(step, c, jax.random.split(k, chunk))

    return run


@functools.lru_cache(maxsize=16)
def _reset_envs(env, network, num_envs: int):
    """jit(env_params, key) -> plotting.rollout.initial_carry of `num_envs` envs."""
    import jax

    from plotting.rollout import initial_carry

    return jax.jit(lambda env_params, key: initial_carry(env, env_params, network, key, num_envs))


@functools.lru_cache(maxsize=16)
def _host_actor(network):
    """jit(params, mem, obs, start) -> greedy_actor's output, for the neurogym rollout."""
    import jax

    from plotting.rollout import greedy_actor

    return jax.jit(lambda params, mem, obs, start: greedy_actor(network, params, hidden=True)(mem, obs, start))


def rollout_neurogym(task, task_kwargs, network, spec, params, seed: int, num_envs: int, num_trials: int) -> tuple[dict, list[str]]:
    """The same records from real neurogym envs stepped in Python (any task), seeded with
    collector.host.env_seeds(seed, 2, E) (training uses stream 0, evaluation 1). Periods come from
    the env's start_ind / end_ind at its current step (t_ind), trial variables from
    env.unwrapped.trial (its scalar entries). Returns (records, period names)."""
    import jax

    from collector.episode import advance
    from collector.host import env_seeds
    from collector.ngym_compat import make_env
    from collector.policy import batched_initial_state

    envs = [make_env(task, **(task_kwargs or {})) for _ in range(num_envs)]
    for env, s in zip(envs, env_seeds(seed, 2, num_envs)):
        env.unwrapped.seed(s)
    obs = np.stack([np.asarray(env.reset()[0], np.float32).reshape(-1) for env in envs])
    act = functools.partial(_host_actor(network), params)
    mem = batched_initial_state(network, obs.shape[1], num_envs)
    n = num_envs
    start, pos, ep_trials = np.ones(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64)
    first_trial = np.ones(n, bool)
    names: list[str] = []
    steps, counted = [], 0
    while counted < num_trials:
        out = jax.device_get(act(mem, obs, start))
        period = np.zeros(n, np.int32)
        trials, gt, new_trial, perf, trial_step = [], np.zeros(n, np.int32), np.zeros(n, bool), np.zeros(n, np.float32), np.zeros(n, np.int32)
        next_obs = np.empty_like(obs)
        for j, env in enumerate(envs):
            u = env.unwrapped
            period[j] = _ngym_period(u, names)
            trials.append({k: float(v) for k, v in u.trial.items() if np.ndim(v) == 0 and _is_number(v)})
            trial_step[j] = u.t_ind
            o, _, _, _, info = env.step(int(out["action"][j]))
            next_obs[j] = np.asarray(o, np.float32).reshape(-1)
            new_trial[j] = bool(info.get("new_trial", False))
            g = info.get("gt", 0)
            gt[j] = int(g) if np.ndim(g) == 0 else 0
            perf[j] = float(info.get("performance", 0.0)) if new_trial[j] else 0.0
        keys = sorted(set().union(*trials))
        steps.append(dict(
            obs=obs, start=start, period=period, gt=gt, trial_step=trial_step, new_trial=new_trial,
            counted=new_trial & ~first_trial, performance=perf, action=np.asarray(out["action"]), q=np.asarray(out["q"]),
            mem=jax.tree.map(np.asarray, out["mem"]), h=np.asarray(out["h"]),
            trial={k: np.array([t.get(k, np.nan) for t in trials]) for k in keys},
        ))
        counted += int(steps[-1]["counted"].sum())
        first_trial &= ~new_trial
        cut = advance(spec, pos, ep_trials, new_trial)
        start, pos, ep_trials = cut.start, cut.pos, cut.ep_trials
        obs, mem = next_obs, out["mem"]
    keys = sorted(set().union(*[s["trial"] for s in steps]))
    for s in steps:
        s["trial"] = {k: s["trial"].get(k, np.full(n, np.nan)) for k in keys}
    return jax.tree.map(lambda *xs: np.stack(xs), *steps), names


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating, np.bool_, bool))


def _ngym_period(u, names: list[str]) -> int:
    """Index (into `names`, extended as new periods appear) of the period holding the env's
    current step: the latest-starting period with start_ind <= t_ind < end_ind (-1: none)."""
    best, best_start = None, -1
    for name, s in u.start_ind.items():
        if s <= u.t_ind < u.end_ind[name] and s >= best_start:
            best, best_start = name, s
    if best is None:
        return -1
    if best not in names:
        names.append(best)
    return names.index(best)


def split_trials(rec: dict, num_trials: int) -> dict:
    """Cut per-step records [S, E, ...] into the first `num_trials` counted trials, in order of
    completion (step, then env): the layout of the module docstring (without the metadata)."""
    new_trial, counted = np.asarray(rec["new_trial"], bool), np.asarray(rec["counted"], bool)
    S, E = new_trial.shape
    begin = np.zeros(E, np.int64)  # first step of each env's current trial
    spans = []  # (end step, env, first step)
    for s in range(S):
        for e in np.flatnonzero(new_trial[s]):
            if counted[s, e]:
                spans.append((s, e, begin[e]))
            begin[e] = s + 1
    if len(spans) < num_trials:
        raise ValueError(f"split_trials: {len(spans)} complete trials recorded, {num_trials} asked for")
    spans = spans[:num_trials]
    lengths = np.array([s - b + 1 for s, _, b in spans], np.int32)
    T = int(lengths.max())
    steps = np.arange(T)
    rows = np.array([b for _, _, b in spans])[:, None] + steps[None, :]  # [N, T]
    cols = np.array([e for _, e, _ in spans])[:, None].repeat(T, 1)
    valid = steps[None, :] < lengths[:, None]
    rows = np.where(valid, rows, 0)

    def take(x, fill):
        x = np.asarray(x)[rows, cols]
        mask = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
        return np.where(mask, x, np.asarray(fill, x.dtype))

    end_s = np.array([s for s, _, _ in spans])
    end_e = np.array([e for _, e, _ in spans])
    last_gt = np.asarray(rec["gt"])[end_s, end_e]
    last_action = np.asarray(rec["action"])[end_s, end_e]
    out = dict(
        obs=take(rec["obs"], 0).astype(np.float32), h=take(rec["h"], 0).astype(np.float32),
        mem=take(rec["mem"], 0).astype(np.float32), q=take(rec["q"], 0).astype(np.float32),
        action=take(rec["action"], -1).astype(np.int32), gt=take(rec["gt"], -1).astype(np.int32),
        period=take(rec["period"], -1).astype(np.int8), start=take(rec["start"], False).astype(bool),
        valid=valid, length=lengths,
        choice=np.where(last_gt != 0, last_action, 0).astype(np.int32),
        correct=np.asarray(rec["performance"])[end_s, end_e] > 0.5,
    )
    for k, v in rec["trial"].items():
        out[f"trial_{k}"] = np.asarray(v)[end_s, end_e]
    return out


# ------------------------------------------------------------------------------------------------
# Analysis
# ------------------------------------------------------------------------------------------------
def aligned_bins(period: np.ndarray, valid: np.ndarray, num_periods: int, min_frac: float = 0.5,
                 min_trials: int = MIN_BIN_TRIALS) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Steps aligned to the start of their trial period: one bin (p, k, trials [n], steps [n]) per
    step k of period p that at least `min_frac` of the trials (and `min_trials`) reach, in period
    order. period [N, T] (index, -1 outside the trial), valid [N, T]."""
    N, T = period.shape
    bins = []
    for p in range(num_periods):
        inside = (period == p) & valid
        has = inside.any(1)
        if not has.any():
            continue
        first = np.argmax(inside, 1)  # the period's first step in each trial that has it
        k = 0
        while True:
            t = first + k
            ok = has & (t < T)
            ok[ok] = inside[np.flatnonzero(ok), t[ok]]
            if ok.sum() < max(min_trials, min_frac * N):
                break
            trials = np.flatnonzero(ok)
            bins.append((p, k, trials, t[trials]))
            k += 1
    return bins


def decode_accuracy(X: np.ndarray, y: np.ndarray, folds: int = FOLDS, seed: int = 0) -> float:
    """Mean accuracy of a linear decoder of labels y [n] from features X [n, F], stratified
    `folds`-fold cross-validated (scikit-learn: StandardScaler then RidgeClassifier). NaN when y has
    one class or a class has fewer than `folds` samples."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    if counts.size < 2 or counts.min() < folds:
        return float("nan")
    model = make_pipeline(StandardScaler(), RidgeClassifier(alpha=1.0))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, np.asarray(X, np.float64).reshape(len(y), -1), y, cv=cv).mean())


def chance_level(y: np.ndarray) -> float:
    """Accuracy of always guessing the most frequent label."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    return float(counts.max() / counts.sum())


def labels_of(values: np.ndarray) -> np.ndarray:
    """Integer class labels of a trial variable (floats such as angles rounded first)."""
    v = np.asarray(values)
    if v.dtype.kind == "f":
        v = np.round(v, 4)
    return np.unique(v, return_inverse=True)[1].reshape(-1)


def remembered_variable(task: str, data: dict) -> tuple[str, str] | None:
    """(trial key, label) of the variable the task must remember, or None without a candidate."""
    if task in REMEMBERED and f"trial_{REMEMBERED[task][0]}" in data:
        return REMEMBERED[task]
    keys = [k[len("trial_"):] for k in data if k.startswith("trial_")]
    for k in ["ground_truth"] + keys:
        v = data.get(f"trial_{k}")
        if v is not None and np.unique(np.asarray(v)[~np.isnan(np.asarray(v, float))]).size >= 2:
            return k, k.replace("_", " ")
    return None


def plastic_constants(memory: str, params) -> tuple[float, float]:
    """(η, λ) of a network whose memory model is `plastic` (mpn, mpn_pre; NaN, NaN otherwise, gru)."""
    if not model_class(memory).plastic:
        return float("nan"), float("nan")
    p = params["params"]["memory"]
    return float(p["eta"]), float(p["lam"])


def analyse(data: dict, task: str, memory: str, periods: list[str]) -> dict:
    """Decoding time courses, PCA projections and the memory norm of one run's trial records."""
    from threadpoolctl import threadpool_limits

    import sklearn

    # hundreds of small fits: one BLAS thread each is ~10x faster than threads fighting over the
    # cores, and sklearn's per-call argument validation costs more than a small fit (the inputs
    # here are finite arrays of our own making)
    with threadpool_limits(1), sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return _analyse(data, task, memory, periods)


def _analyse(data: dict, task: str, memory: str, periods: list[str]) -> dict:
    from sklearn.decomposition import PCA

    bins = aligned_bins(data["period"], data["valid"], len(periods))
    own_state = model_class(memory).state_name is not None  # else the memory state is h itself
    sources = {"h": data["h"]}
    if own_state:
        sources["M"] = data["mem"]
    var = remembered_variable(task, data)
    targets = {}
    if var is not None:
        targets["remembered"] = (labels_of(data[f"trial_{var[0]}"]), var[1])
    targets["choice"] = (data["choice"], "choice")
    decoding = {}
    for tname, (y, _) in targets.items():
        for sname, x in sources.items():
            acc = np.array([decode_accuracy(x[trials, steps], y[trials]) for _, _, trials, steps in bins])
            decoding[(tname, sname)] = acc
        decoding[(tname, "chance")] = np.array([chance_level(y[trials]) for _, _, trials, _ in bins])
    pca = {}
    valid = data["valid"]
    for sname, x in sources.items():
        flat = x.reshape(x.shape[:2] + (-1,))
        k = min(2, flat.shape[-1])  # a one-unit state has one component; the second axis stays 0
        model = PCA(n_components=k, random_state=0).fit(flat[valid])
        proj = np.zeros(x.shape[:2] + (2,), np.float32)
        proj[valid, :k] = model.transform(flat[valid])
        pca[sname] = dict(proj=proj, explained=np.r_[model.explained_variance_ratio_, np.zeros(2 - k)])
    norm = None
    if own_state:
        n = np.linalg.norm(data["mem"].reshape(data["mem"].shape[:2] + (-1,)), axis=-1)
        norm = np.array([[n[trials, steps].mean(), n[trials, steps].std()] for _, _, trials, steps in bins]).reshape(-1, 2)
    return dict(bins=[(p, k) for p, k, _, _ in bins], bin_index=bins, decoding=decoding, targets=targets,
                variable=var, pca=pca, norm=norm)


# ------------------------------------------------------------------------------------------------
# One run
# ------------------------------------------------------------------------------------------------
def load_network(run_dir: Path):
    """(cfg, network, params) of a finished run, with the config checked by config.load (a damaged
    config.yaml or one this code base cannot run is a PlotError)."""
    import config as config_mod
    from plotting.common import load_config, load_params

    load_config(run_dir)  # YAML and env.task
    try:
        config_mod.load(run_dir / "config.yaml")
    except config_mod.ConfigError as e:
        raise PlotError(str(e)) from None
    try:
        return load_params(run_dir)
    except (KeyError, TypeError) as e:
        raise PlotError(f"{run_dir / 'config.yaml'}: not a complete run configuration: {_first_line(e)}") from None


def record_run(run_dir: Path, trials: int, seed: int, num_envs: int, checked=None) -> dict:
    """Roll out the greedy policy of one run and return its trial records with metadata (the
    --data layout) plus 'eta', 'lam'."""
    import jax

    from learner import episode_spec

    cfg, network, params = checked or load_network(run_dir)
    task, kwargs = cfg["env"]["task"], cfg["env"].get("kwargs") or {}
    backend = cfg["env"].get("backend", "jax")
    spec = episode_spec(cfg)
    if backend == "jax":
        from collector.jax_envs import make_jax_env

        try:
            env, env_params = make_jax_env(task, **kwargs)
        except (ValueError, TypeError) as e:
            raise PlotError(f"{run_dir / 'config.yaml'}: env.kwargs: {_first_line(e)}") from None
        # fold_in: these envs differ from the training and evaluation envs of the same seed
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 0xD1)
        rec = rollout_jax(env, env_params, network, spec, params, key, num_envs, trials)
        periods = list(env.periods)
    else:
        try:
            rec, periods = rollout_neurogym(task, kwargs, network, spec, params, seed, num_envs, trials)
        except (ValueError, TypeError) as e:
            raise PlotError(f"{run_dir / 'config.yaml'}: env: {_first_line(e)}") from None
    data = split_trials(rec, trials)
    memory = cfg["model"]["memory"]
    eta, lam = plastic_constants(memory, params)
    data.update(
        periods=np.array(periods, dtype=str), trial_variables=np.array(sorted(k[6:] for k in data if k.startswith("trial_")), dtype=str),
        task=np.array(task), memory=np.array(memory), backend=np.array(backend), run=np.array(str(run_dir)),
        run_seed=np.array(cfg.get("seed", -1)), sim_seed=np.array(seed), eta=np.array(eta), lam=np.array(lam),
        layout=np.array(LAYOUT),
    )
    data["_cfg"] = cfg
    return data


# ------------------------------------------------------------------------------------------------
# Figure
# ------------------------------------------------------------------------------------------------
def _condition_names(values: np.ndarray, key: str, label: str) -> dict[int, str]:
    v = np.asarray(values)
    uniq = np.unique(np.round(v, 4) if v.dtype.kind == "f" else v)
    if key.endswith("theta"):
        return {i: f"{label} {np.degrees(u):.0f}°" for i, u in enumerate(uniq)}
    return {i: f"{label} {u:g}" if v.dtype.kind == "f" else f"{label} {u}" for i, u in enumerate(uniq)}


def _x_axis(ax, bins, periods):
    """Period boundaries and names on an axis whose x is the aligned bin index."""
    from matplotlib.ticker import MaxNLocator

    starts = [i for i, (p, k) in enumerate(bins) if k == 0]
    for i in starts:
        ax.axvline(i - 0.5, color="0.75", lw=0.8, zorder=0)
    for j, i in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else len(bins)
        ax.text((i + end - 1) / 2, 1.0, periods[bins[i][0]], transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=7, color="0.35")
    ax.set_xlim(-0.5, len(bins) - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step, aligned to the start of each trial period")


def _pca_panel(ax, data, an, source, periods, title):
    import matplotlib.pyplot as plt

    var = an["variable"]
    pca = an["pca"][source]
    proj = pca["proj"]
    if var is None:
        y, names = np.zeros(len(data["length"]), int), {0: "all trials"}
    else:
        y = an["targets"]["remembered"][0]
        names = _condition_names(data[f"trial_{var[0]}"], var[0], var[1])
    colors = plt.get_cmap("tab10")
    rng = np.random.default_rng(0)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        for i in rng.choice(members, size=min(8, members.size), replace=False):
            n = data["length"][i]
            ax.plot(proj[i, :n, 0], proj[i, :n, 1], color=colors(c % 10), lw=0.5, alpha=0.25)
    markers = "osD^vP*Xh<>"
    for c in np.unique(y):
        pts, starts = [], []
        for p, k, trials, steps in an["bin_index"]:
            sel = y[trials] == c
            if sel.sum() == 0:
                continue
            pts.append(proj[trials[sel], steps[sel]].mean(0))
            starts.append(p if k == 0 else None)
        pts = np.array(pts)
        ax.plot(pts[:, 0], pts[:, 1], color=colors(c % 10), lw=1.8, label=names.get(c, str(c)))
        for pt, p in zip(pts, starts):
            if p is not None:
                ax.plot(pt[0], pt[1], markers[p % len(markers)], color=colors(c % 10), mec="k", mew=0.6, ms=6)
    for p, name in enumerate(periods):
        if any(b[0] == p for b in an["bins"]):
            ax.plot([], [], markers[p % len(markers)], color="w", mec="k", mew=0.6, label=f"{name} starts")
    ev = pca["explained"]
    ax.set_xlabel(f"PC1 ({ev[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ev[1]:.0%})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="best", framealpha=0.7)


def _not_applicable(ax, title, text):
    ax.set_title(title, fontsize=9)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="0.3", wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _merge_bins(analyses) -> list[tuple[int, int]]:
    """The union of the runs' aligned bins, in (period, step) order."""
    return sorted({b for an in analyses for b in an["bins"]})


def _on_bins(an, bins, values):
    where = {b: i for i, b in enumerate(an["bins"])}
    return np.array([values[where[b]] if b in where else np.nan for b in bins])


def _nanmean(curves: np.ndarray) -> np.ndarray:
    """Mean over runs (axis 0), NaN where no run has a value (without numpy's warning)."""
    ok = np.isfinite(curves)
    return np.where(ok.any(0), np.where(ok, curves, 0.0).sum(0) / np.maximum(ok.sum(0), 1), np.nan)


def plot(datas: list[dict], analyses: list[dict], out: Path, title: str) -> Path:
    use_agg()
    import matplotlib.pyplot as plt

    first, an0 = datas[0], analyses[0]
    memory = str(first["memory"])
    periods = [str(p) for p in first["periods"]]
    bins = _merge_bins(analyses)
    multi = len(datas) > 1
    fig = plt.figure(figsize=(15, 9), constrained_layout=True)
    gs = fig.add_gridspec(2, 6)
    ax_a, ax_b, ax_d = fig.add_subplot(gs[0, 0:2]), fig.add_subplot(gs[0, 2:4]), fig.add_subplot(gs[0, 4:6])
    ax_c1, ax_c2 = fig.add_subplot(gs[1, 0:3]), fig.add_subplot(gs[1, 3:6])
    which = f" ({Path(str(first['run'])).name}, the first of {len(datas)} runs)" if multi else ""
    _pca_panel(ax_a, first, an0, "h", periods, f"(a) hidden activity h{which}: condition means, 8 single trials each")
    mem_name = model_class(memory).state_name
    if mem_name:
        _pca_panel(ax_b, first, an0, "M", periods, f"(b) memory state {mem_name}{which}")
    else:
        _not_applicable(ax_b, "(b) memory state", f"not applicable: the {memory.upper()}'s memory state\n"
                        "is its hidden activity h (panel a)")

    # (c) decoding
    colors = {"h": "C0", "M": "C3"}
    source_label = {"h": "from h", "M": f"from {mem_name or 'M'}"}
    for ax, tname, letter in ((ax_c1, "remembered", "(c)"), (ax_c2, "choice", "(c')")):
        if tname not in an0["targets"]:
            _not_applicable(ax, f"{letter} decoding", "no trial variable with two or more values to decode")
            continue
        label = an0["targets"][tname][1]
        x = np.arange(len(bins))
        for sname in ("h", "M"):
            if (tname, sname) not in an0["decoding"]:
                continue
            curves = np.array([_on_bins(an, bins, an["decoding"][(tname, sname)]) for an in analyses])
            if multi:
                for cur in curves:
                    ax.plot(x, cur, color=colors[sname], lw=0.6, alpha=0.35)
            mean = _nanmean(curves)
            ax.plot(x, mean, "o-", color=colors[sname], lw=1.6, ms=3,
                    label=source_label[sname] + (f" (mean of {len(datas)} runs)" if multi else ""))
        chance = np.array([_on_bins(an, bins, an["decoding"][(tname, "chance")]) for an in analyses])
        ax.plot(x, _nanmean(chance), "--", color="0.4", lw=1, label="chance (majority class)")
        _x_axis(ax, bins, periods)
        ax.set_ylim(0.3, 1.03)
        ax.set_ylabel("decoding accuracy (5-fold CV)")
        what = f"the {label}" if tname == "remembered" else "the upcoming choice (0 = none)"
        ax.set_title(f"{letter} linear decoding of {what}", fontsize=9, pad=12)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    if mem_name is None:
        ax_c1.text(0.01, 0.02, f"{memory.upper()}: no separate memory state to decode", transform=ax_c1.transAxes, fontsize=7, color="0.3")

    # (d) plasticity constants and memory size
    if mem_name and model_class(memory).plastic:
        x = np.arange(len(bins))
        for i, (d, an) in enumerate(zip(datas, analyses)):
            mean = _on_bins(an, bins, an["norm"][:, 0])
            sd = _on_bins(an, bins, an["norm"][:, 1])
            lab = f"η = {float(d['eta']):.3f}, λ = {float(d['lam']):.3f}"
            if multi:
                lab = f"{Path(str(d['run'])).name}: " + lab
            ax_d.plot(x, mean, "-", color=f"C{i % 10}", lw=1.4, label=lab)
            if not multi:
                ax_d.fill_between(x, mean - sd, mean + sd, color=f"C{i % 10}", alpha=0.2, lw=0, label="± 1 s.d. over trials")
        _x_axis(ax_d, bins, periods)
        ax_d.set_ylabel(f"‖{mem_name}‖ (Frobenius), mean over trials")
        ax_d.set_title(f"(d) learned η, λ and the size of {mem_name} over the trial", fontsize=9, pad=12)
        ax_d.grid(True, alpha=0.3)
        ax_d.legend(fontsize=7, loc="best", framealpha=0.8)
    else:
        _not_applicable(ax_d, "(d) plasticity", f"not applicable: the {memory.upper()} has no η, λ or\nmodulation matrix")
    fig.suptitle(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summarise(datas: list[dict], analyses: list[dict]) -> dict:
    """What the figure shows, as numbers (written next to it as JSON): per run, the accuracy of
    the greedy policy, η and λ, and per aligned step (period, step in period) the decoding
    accuracies, their chance level and the mean norm of the memory state; plus the mean decoding
    accuracy per period."""
    runs = []
    for d, an in zip(datas, analyses):
        periods = [str(p) for p in d["periods"]]
        steps = [[periods[p], k] for p, k in an["bins"]]
        decoding, by_period = {}, {}
        for (target, source), acc in an["decoding"].items():
            name = f"{target}_{source}"
            decoding[name] = [None if np.isnan(a) else round(float(a), 4) for a in acc]
            by_period[name] = {}
            for p in dict.fromkeys(p for p, _ in an["bins"]):
                sel = np.array([b[0] == p for b in an["bins"]])
                vals = acc[sel][~np.isnan(acc[sel])]
                by_period[name][periods[p]] = round(float(vals.mean()), 4) if vals.size else None
        runs.append(dict(
            run=str(d["run"]), run_seed=int(d["run_seed"]), trials=int(len(d["length"])),
            accuracy=round(float(d["correct"].mean()), 4), no_response=round(float((d["choice"] == 0).mean()), 4),
            eta=None if np.isnan(d["eta"]) else float(d["eta"]), lam=None if np.isnan(d["lam"]) else float(d["lam"]),
            remembered_variable=None if an["variable"] is None else an["variable"][0],
            steps=steps, decoding=decoding, decoding_mean_by_period=by_period,
            memory_norm=None if an["norm"] is None else [round(float(v), 4) for v in an["norm"][:, 0]],
        ))
    d0 = datas[0]
    return dict(task=str(d0["task"]), memory=str(d0["memory"]), backend=str(d0["backend"]), sim_seed=int(d0["sim_seed"]),
                decoder=f"StandardScaler + RidgeClassifier(alpha=1), stratified {FOLDS}-fold CV, per aligned step",
                chance="share of the majority class among the trials decoded at that step", runs=runs)


# ------------------------------------------------------------------------------------------------
# Command
# ------------------------------------------------------------------------------------------------
def data_paths(data: Path, runs: list[Path]) -> list[Path]:
    """Where --data goes: the path itself for one run, else <stem>_<run name>.npz per run (with
    the parent's name too when run names repeat)."""
    if len(runs) == 1:
        return [data]
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        names = [f"{r.parent.name}-{r.name}" for r in runs]
    stem = data.name[:-4] if data.name.endswith(".npz") else data.name
    return [data.with_name(f"{stem}_{n}.npz") for n in names]


def save_data(path: Path, data: dict) -> Path:
    arrays = {k: v for k, v in data.items() if not k.startswith("_")}
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def dynamics(run_arg, out=None, data_out=None, trials: int = 400, seed: int = 0, num_envs: int = 32):
    """The whole command; returns (figure path, [data paths], [(data, analysis)])."""
    check_simulation(trials, MAX_TRIALS, seed, num_envs)
    if trials < 2 * FOLDS:
        raise PlotError(f"--trials {trials}: decoding with {FOLDS}-fold cross-validation needs at least {2 * FOLDS} trials")
    runs = find_runs([run_arg])
    out = check_figure(out, "--out") if out is not None else Path(run_arg) / "dynamics.png"
    check_writable(out, "--out")
    check_writable(out.with_suffix(".json"), "--out")
    dpaths = data_paths(Path(data_out), runs) if data_out is not None else []
    for p in dpaths:
        check_writable(p, "--data")
    checked = []
    for r in runs:
        checked.append(load_network(r))
    tasks = {(c[0]["env"]["task"], c[0]["model"]["memory"]) for c in checked}
    if len(tasks) > 1:
        raise PlotError(f"{run_arg}: holds runs of {len(tasks)} task / memory combinations "
                        f"({', '.join(sorted('/'.join(t) for t in tasks))}); pass a folder of one")
    datas, analyses = [], []
    for r, c in zip(runs, checked):
        d = record_run(r, trials, seed, num_envs, checked=c)
        datas.append(d)
        analyses.append(analyse(d, str(d["task"]), str(d["memory"]), [str(p) for p in d["periods"]]))
    for p, d in zip(dpaths, datas):
        save_data(p, d)
    summary = summarise(datas, analyses)
    cfg = datas[0]["_cfg"]
    label = group_label(cfg, load_summary(runs[0]), runs[0])
    acc = np.mean([d["correct"].mean() for d in datas])
    where = "/".join(Path(run_arg).resolve().parts[-2:])
    seeds = f"{len(runs)} runs (seeds {', '.join(str(int(d['run_seed'])) for d in datas)})" if len(runs) > 1 else f"seed {int(datas[0]['run_seed'])}"
    title = (f"{cfg['env']['task']}: {label}, {seeds}; {where}\n"
             f"greedy policy, {trials} fresh trials per run ({str(datas[0]['backend'])} envs, sim seed {seed}), "
             f"accuracy {acc:.3f}")
    fig = plot(datas, analyses, out, title)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(summary, indent=1))
    return fig, json_path, dpaths, list(zip(datas, analyses))


def main(argv=None) -> int:
    p = OneLineParser(prog=PROG, description="Hidden activity, memory state, decoding and plasticity of the "
                                "greedy policy of a trained run (or of each run in a folder of seeds).",
                                epilog="See the docstring of plotting/dynamics.py for the --data layout.")
    p.add_argument("run", metavar="RUN_DIR", help="a run folder, or a folder of run folders of one task and model")
    p.add_argument("--trials", type=int, default=400, help="trials to record per run (default 400)")
    p.add_argument("--out", metavar="FIG.png", help="figure to write (default RUN_DIR/dynamics.png)")
    p.add_argument("--data", metavar="OUT.npz", help="also save the recorded arrays (one run: OUT.npz; several: OUT_<run>.npz)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated envs (default 0)")
    p.add_argument("--num-envs", type=int, default=32, help="envs simulated in parallel (default 32)")
    args = p.parse_args(argv)
    import_jax(PROG)  # JAX's environment variables, checked in one line
    try:
        fig, json_path, dpaths, _ = dynamics(args.run, args.out, args.data, args.trials, args.seed, args.num_envs)
    except PlotError as e:
        return cli_error(PROG, e)
    except OSError as e:
        return cli_error(PROG, f"{type(e).__name__}: {e}")
    print(fig)
    print(json_path)
    for d in dpaths:
        print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
