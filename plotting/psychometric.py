"""Psychometric curve of a trained PerceptualDecisionMaking-v0 run.

    python -m plotting.psychometric RUN_DIR --out FIG.png [--trials N] [--seed S] [--num-envs E]

Loads the run's parameters, runs its greedy policy (ε = 0) on the pure-JAX port of the task
(E vmapped envs, the whole simulation in one jax.jit) with the run's episode rules (memory reset at
episode starts, after `episode.trials` trials or `episode.max_steps` steps, and at every trial
start when `episode.reset_memory_on_trial`), drops each env's first trial (as the training
statistics do) and records, for the first N trials to finish:

- the signed coherence: +coh when the correct action is 2 ("right"; the port's ground_truth 1,
  correct action = ground_truth + 1), -coh when it is 1 ("left");
- the choice: the action that ended the trial in the decision period (1 or 2), or 0 when the trial
  timed out without a response (or, with `abort`, ended by a fixation break).

The figure shows P(choose right) among the trials with a response, per signed coherence, with
Wilson 95% binomial intervals and a maximum-likelihood logistic fit; the title gives the fraction of
no-response trials. The per-coherence table is written next to the figure as JSON (same stem).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from plotting.common import (
    PlotError, check_figure, check_simulation, check_writable, cli_error, find_runs, group_label, load_summary, use_agg,
    wilson_ci,
)
from jaxenv import import_jax
from oneline import OneLineParser

PROG = "python -m plotting.psychometric"
MAX_TRIALS = 200_000  # trials one call simulates (a few seconds; the log is kept on the device)
TASK = "PerceptualDecisionMaking-v0"
LEFT, RIGHT = 1, 2


def simulate(env, env_params, network, spec, params, key, num_envs: int, num_trials: int, chunk: int = 32):
    """Greedy policy on `num_envs` JAX envs until `num_trials` trials (first trial of each env left
    out) have finished. Returns numpy arrays [num_trials] in order of completion: coh, correct
    action (1 or 2), choice (0 = no response, else the action that ended the trial in the decision
    period) and performance (1.0 for a correct choice)."""
    import jax
    import jax.numpy as jnp

    from plotting.rollout import greedy_step, initial_carry

    env_step = greedy_step(env, env_params, network, spec, params)

    def step(c, k):
        env_c, r = env_step(c["env"], k)
        counted = r["counted"]
        trial = r["trial"]  # the trial the action belonged to
        idx = jnp.where(counted, c["count"] + jnp.cumsum(counted) - 1, num_trials)
        log = dict(
            coh=c["log"]["coh"].at[idx].set(trial["coh"].astype(jnp.float32), mode="drop"),
            correct=c["log"]["correct"].at[idx].set(jax.vmap(env.gt_action)(trial), mode="drop"),
            choice=c["log"]["choice"].at[idx].set(jnp.where(r["gt"] != 0, r["action"], 0), mode="drop"),
            performance=c["log"]["performance"].at[idx].set(r["performance"], mode="drop"),
        )
        return dict(env=env_c, count=c["count"] + counted.sum(), log=log), None

    @jax.jit
    def run(key):
        k_reset, k_steps = jax.random.split(key)
        c = dict(
            env=initial_carry(env, env_params, network, k_reset, num_envs), count=jnp.zeros((), jnp.int32),
            log=dict(coh=jnp.zeros((num_trials,), jnp.float32), correct=jnp.zeros((num_trials,), jnp.int32),
                     choice=jnp.zeros((num_trials,), jnp.int32), performance=jnp.zeros((num_trials,), jnp.float32)),
        )

        def body(carry):
            c, k = carry
            k, sub = jax.random.split(k)
            c, _ = jax.lax.scan(step, c, jax.random.split(sub, chunk))
            return c, k

        c, _ = jax.lax.while_loop(lambda carry: carry[0]["count"] < num_trials, body, (c, k_steps))
        return c["log"]

    return {k: np.asarray(v) for k, v in jax.device_get(run(key)).items()}


def psychometric_table(coh, correct, choice) -> list[dict]:
    """One row per signed coherence: counts of right / left / no-response choices, P(right) among
    the responses with its Wilson 95% interval, and P(right) over all trials."""
    signed = np.round(np.where(np.asarray(correct) == RIGHT, coh, -np.asarray(coh, float)), 4) + 0.0  # -0.0 -> 0.0
    choice = np.asarray(choice)
    rows = []
    for s in np.unique(signed):
        sel = signed == s
        n = int(sel.sum())
        n_right, n_left = int((choice[sel] == RIGHT).sum()), int((choice[sel] == LEFT).sum())
        responded = n_right + n_left
        lo, hi = wilson_ci(n_right, responded)
        rows.append(dict(
            signed_coherence=float(s), n=n, n_right=n_right, n_left=n_left, n_no_response=n - responded,
            p_right=n_right / responded if responded else None,
            ci_lo=float(lo) if responded else None, ci_hi=float(hi) if responded else None,
            p_right_of_all=n_right / n,
        ))
    return rows


def fit_logistic(x, y, ridge: float = 1e-2, iters: int = 100):
    """Maximum-likelihood logistic regression P(y = 1) = 1 / (1 + exp(-(b0 + b1 x))) by Newton's
    method, with a small ridge penalty on b1 (keeps it finite when the choices separate perfectly).
    Returns (b0, b1) or None without both kinds of outcome."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0 or y.min() == y.max():
        return None
    X = np.stack([np.ones_like(x), x], 1)
    b = np.zeros(2)
    pen = np.diag([0.0, ridge])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ b, -30, 30)))
        grad = X.T @ (y - p) - pen @ b
        hess = X.T @ (X * (p * (1 - p))[:, None]) + pen + 1e-9 * np.eye(2)
        delta = np.linalg.solve(hess, grad)
        b = b + delta
        if np.abs(delta).max() < 1e-10:
            break
    return float(b[0]), float(b[1])


def plot(table: list[dict], fit, out: Path, title: str) -> Path:
    use_agg()
    import matplotlib.pyplot as plt

    s = np.array([r["signed_coherence"] for r in table])
    has = np.array([r["p_right"] is not None for r in table], bool)
    p = np.array([r["p_right"] if r["p_right"] is not None else np.nan for r in table], float)
    lo = np.array([r["ci_lo"] if r["ci_lo"] is not None else np.nan for r in table], float)
    hi = np.array([r["ci_hi"] if r["ci_hi"] is not None else np.nan for r in table], float)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), constrained_layout=True)
    ax.axhline(0.5, color="0.6", ls=":", lw=1)
    ax.axvline(0.0, color="0.6", ls=":", lw=1)
    span = max(float(np.abs(s).max()), 1.0) if s.size else 1.0
    if fit is not None:
        xs = np.linspace(-span * 1.05, span * 1.05, 300)
        ax.plot(xs, 1.0 / (1.0 + np.exp(-(fit[0] + fit[1] * xs / 100.0))), color="C0", lw=1.5,
                label="logistic fit (max. likelihood)")
    else:
        ax.plot(s[has], p[has], color="C0", lw=1, alpha=0.6, label="points joined (no logistic fit)")
    ax.errorbar(s[has], p[has], yerr=[p[has] - lo[has], hi[has] - p[has]], fmt="o", color="C0", ecolor="C0",
                capsize=3, ms=5, label="P(right) among responses, 95% Wilson CI")
    n_none = np.array([r["n_no_response"] for r in table])
    if n_none.any():
        p_all = np.array([r["p_right_of_all"] for r in table], float)
        ax.plot(s, p_all, "s", mfc="none", color="0.45", ms=5, label="P(right) over all trials (no response = not right)")
    if not has.any():
        ax.text(0.5, 0.62, "no trial had a response", transform=ax.transAxes, ha="center", fontsize=11, color="C3")
    ax.set_xlim(-span * 1.1, span * 1.1)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("signed coherence (%)   (+: right / action 2 is correct)")
    ax.set_ylabel("P(choose right)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def psychometric(run_dir, out, trials: int = 2000, seed: int = 0, num_envs: int = 64) -> tuple[Path, Path, dict]:
    """Simulate, tabulate, fit and plot; returns (figure path, JSON path, JSON content)."""
    from plotting.common import load_config, load_params

    run_dir, out = Path(run_dir), Path(out)
    cfg = load_config(run_dir)
    task = cfg["env"]["task"]
    if task != TASK:
        raise PlotError(f"{run_dir}: psychometric curves need a {TASK} run; this run's task is {task}")
    import jax

    from collector.jax_envs import make_jax_env
    from learner import episode_spec

    try:
        env, env_params = make_jax_env(task, **(cfg["env"].get("kwargs") or {}))
    except ValueError as e:
        raise PlotError(f"{run_dir}/config.yaml: env.kwargs: {e}") from None
    if env.num_actions != 3:
        raise PlotError(f"{run_dir}: a left/right psychometric curve needs dim_ring 2 (this run has {env.num_actions - 1} choices)")
    cfg, network, params = load_params(run_dir)
    log = simulate(env, env_params, network, episode_spec(cfg), params, jax.random.PRNGKey(seed), num_envs, trials)
    table = psychometric_table(log["coh"], log["correct"], log["choice"])
    responded = log["choice"] != 0
    fit = fit_logistic(np.where(log["correct"] == RIGHT, log["coh"], -log["coh"])[responded] / 100.0,
                       (log["choice"][responded] == RIGHT).astype(float))
    summary = load_summary(run_dir)
    label = group_label(cfg, summary, run_dir)
    no_resp = float(1.0 - responded.mean())
    accuracy = float(log["performance"].mean())
    result = dict(
        run=str(run_dir), task=task, group=label, run_seed=cfg.get("seed"), sim_seed=seed, trials=trials,
        num_envs=num_envs, policy="greedy (epsilon 0), JAX port, first trial of each env dropped",
        signed_coherence="+coh when the correct action is 2 (right), -coh when it is 1 (left); coherence in %",
        p_right="n_right / (n_right + n_left): among trials with a response; p_right_of_all: n_right / n",
        no_response_fraction=no_resp, accuracy=accuracy,
        summary_final_eval_performance=(summary or {}).get("final_eval_performance"),
        logistic=None if fit is None else dict(
            b0=fit[0], b1_per_unit_coherence=fit[1],
            bias_pse_percent=(-fit[0] / fit[1] * 100.0) if fit[1] != 0 else None,
            slope_per_percent=fit[1] / 100.0,
        ),
        table=table,
    )
    title = (f"Psychometric curve: {label}, seed {cfg.get('seed')}\n{'/'.join(run_dir.resolve().parts[-2:])}: {trials} trials, "
             f"accuracy {accuracy:.3f}, no response {no_resp:.1%}")
    fig_path = plot(table, fit, out, title)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(result, indent=2))
    return fig_path, json_path, result


def main(argv=None) -> int:
    p = OneLineParser(prog=PROG, description="Psychometric curve (P(choose right) vs signed coherence) of "
                                "the greedy policy of a trained PerceptualDecisionMaking-v0 run.")
    p.add_argument("run", metavar="RUN_DIR", help="one run folder (with config.yaml and params.msgpack)")
    p.add_argument("--out", required=True, metavar="FIG.png", help="figure to write; the table goes to the same stem .json")
    p.add_argument("--trials", type=int, default=2000, help="trials to simulate (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated envs (default 0)")
    p.add_argument("--num-envs", type=int, default=64, help="envs simulated in parallel (default 64)")
    args = p.parse_args(argv)
    import_jax(PROG)  # JAX's environment variables, checked in one line
    try:
        check_simulation(args.trials, MAX_TRIALS, args.seed, args.num_envs)
        check_figure(args.out, "--out")
        check_writable(Path(args.out), "--out")
        runs = find_runs([args.run])
        if len(runs) != 1:
            raise PlotError(f"{args.run}: holds {len(runs)} run folders ({', '.join(r.name for r in runs[:4])}"
                            f"{', ...' if len(runs) > 4 else ''}); pass one of them")
        fig_path, json_path, _ = psychometric(runs[0], args.out, args.trials, args.seed, args.num_envs)
    except PlotError as e:
        return cli_error(PROG, e)
    except (OSError, ValueError) as e:
        return cli_error(PROG, f"{type(e).__name__}: {e}")
    print(fig_path)
    print(json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
