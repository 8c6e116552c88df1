"""Reusable fidelity checks of a pure-JAX task port (collector/tasks/) against the real neurogym.

Each port's test file (tests/test_port_<task>.py) calls these with its task id, a few forced trial
conditions and, where the generic policies do not fit, a policy of its own. Every check compares
the port with neurogym itself (never the port with itself), with fixed seeds, so outcomes are
deterministic; statistical tolerances are 4-5 standard errors of the compared quantity.

- `check_trials(task, cases)`: noise-free observations and ground truth of whole forced trials, then
  step by step under several action scripts (timeout, correct / wrong choice, fixation breaks,
  random): obs, reward, new_trial, gt, performance and trial_step, in both envs (sigma = 0).
- `check_noise(task)`: per period and channel, the std of obs minus its noise-free value is
  sigma / sqrt(dt) where neurogym adds noise and exactly 0 elsewhere, in both envs.
- `check_lengths(task)`: trial-length distributions, two-sample chi-square, and the advertised bounds.
- `check_closed_loop(task)`: random, always-fixate and ground-truth-following ("oracle": the action
  neurogym's gt_now names, a scripted correct policy for tasks whose gt is the rewarded action)
  policies: reward per trial, performance and steps per trial within sampling error of neurogym's;
  returns the per-policy performance so the test can check the task table too.

The port side runs through one jitted runner per (task, number of envs, number of steps): vmapped
envs, a lax.scan over steps and a policy chosen by a traced id, compiled once and reused by every
check of the file (same shapes), so a port's whole test costs a few seconds on 2 CPU cores.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from collector.jax_envs import make_jax_env, period_index
from collector.ngym_compat import make_env

POLICIES = ("random", "fixate", "oracle", "script")
N_ENVS = 128
N_STEPS = 256  # one runner shape for every check of a file: one compilation
# The test programs are small and run for milliseconds, but XLA's CPU backend spends seconds
# optimizing them: compiling without backend optimization halves the compile time of a runner.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


# --------------------------------------------------------------------------------------------
# neurogym side
# --------------------------------------------------------------------------------------------
def ngym(task, seed=0, **kw):
    """A real neurogym env, seeded and reset."""
    env = make_env(task, **kw)
    env.unwrapped.seed(seed)
    env.reset()
    return env


def force_ngym_trial(env, durations=None, **forced):
    """Start a forced trial at step 0 of a neurogym env (as step() does at a trial boundary);
    durations: {period: steps}, applied for this trial only."""
    u = env.unwrapped
    saved = dict(u.timing)
    if durations:
        u.timing.update({p: int(s) * u.dt for p, s in durations.items()})
    try:
        u.new_trial(**forced)
    finally:
        u.timing.clear()
        u.timing.update(saved)
    u.t = u.t_ind = 0
    u.performance = 0
    return u


# --------------------------------------------------------------------------------------------
# port side: one compiled runner per (task, envs, steps)
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def runner(task, n_envs=N_ENVS, n_steps=N_STEPS, policy=None, carry_size=0):
    """(env, new_trials, run) for `task` at its default option shapes.

    new_trials(keys[N], params, forced{k: [N]}, durations{p: [N]}) -> batched states;
    run(key, params, pid, states, script[S, N]) -> (obs0[N, D], per-step outputs [S, N, ...]) of
    n_envs envs started at `states` (step-0 obs drawn with noise, as reset does) under
    POLICIES[pid]; `policy` (optional, hashable) replaces "oracle" by a policy with memory:
    policy(obs, state, params, key, carry) -> (action, carry), carry float32[carry_size] per env,
    zeros at the start (the policy resets it itself, e.g. where state.t == 0)."""
    env, _ = make_jax_env(task)

    def new_trials(keys, params, forced, durations):
        return jax.vmap(lambda k, f, d: env.new_trial(k, params, durations=d, **f))(keys, forced, durations)

    def act(pid, key, obs, state, params, scripted, carry):
        rand = jax.random.randint(key, (), 0, env.num_actions)
        if policy is None:
            oracle = env.gt_now(state, params)
        else:
            oracle, carry = policy(obs, state, params, key, carry)
        return jnp.stack([rand, 0, oracle, scripted]).astype(jnp.int32)[pid], carry

    def run(key, params, pid, state, script):
        clean = params.replace(sigma=jnp.zeros_like(params.sigma))
        k0, key = jax.random.split(key)
        z0 = jax.random.normal(k0, (n_envs, env.noise_dim))
        obs0 = jax.vmap(env.get_obs, in_axes=(0, None, 0))(state, params, z0)

        def body(carry, xs):
            obs, state, mem = carry
            k, scripted = xs
            ka, ke = jax.random.split(k)
            a, mem = jax.vmap(act, in_axes=(None, 0, 0, 0, None, 0, 0))(
                pid, jax.random.split(ka, n_envs), obs, state, params, scripted, mem)
            obs, state, r, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(ke, n_envs), state, a, params)
            ref = jax.vmap(env.get_obs, in_axes=(0, None))(state, clean)
            out = dict(obs=obs, clean=ref, period=jax.vmap(period_index)(state), reward=r, done=done,
                       new_trial=info["new_trial"], gt=info["gt"], performance=info["performance"],
                       trial_step=info["trial_step"], num_tr=state.num_tr, action=a)
            return (obs, state, mem), out

        mem0 = jnp.zeros((n_envs, carry_size), jnp.float32)
        _, out = jax.lax.scan(body, (obs0, state, mem0), (jax.random.split(key, n_steps), script))
        return obs0, out

    return env, jax.jit(new_trials, compiler_options=FAST_COMPILE), jax.jit(run, compiler_options=FAST_COMPILE)


def port_run(task, pid, seed=0, script=None, states=None, n_envs=N_ENVS, n_steps=N_STEPS, policy=None,
             carry_size=0, **kw):
    """Run the port's runner; returns (obs0, {name: np.ndarray [S, N, ...]})."""
    env, new_trials, run = runner(task, n_envs, n_steps, policy, carry_size)
    _, params = make_jax_env(task, **kw)
    key = jax.random.PRNGKey(seed)
    if states is None:
        key, k = jax.random.split(key)
        states = new_trials(jax.random.split(k, n_envs), params, {}, {})
    if script is None:
        script = np.zeros((n_steps, n_envs), np.int32)
    obs0, out = run(key, params, pid, states, jnp.asarray(script, jnp.int32))
    return np.asarray(obs0), {k: np.asarray(v) for k, v in out.items()}


def z_of(a, b):
    """Two-sample z of the means of a and b (0 when both are constant and equal)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    if se == 0:
        return 0.0 if a.mean() == b.mean() else math.inf
    return (a.mean() - b.mean()) / se


# --------------------------------------------------------------------------------------------
# 1. Noise-free trials and step semantics
# --------------------------------------------------------------------------------------------
def action_scripts(rng, gt, num_actions):
    """Action sequences for one trial whose per-step ground truth is gt[T]: fixate throughout
    (timeout), the ground truth at every step (correct choice), a wrong choice where the ground
    truth is non-zero, early responses / fixation breaks, and random actions."""
    T = len(gt)
    gt = [int(g) for g in gt]
    out = [[0] * T, gt]
    dec = [i for i, g in enumerate(gt) if g != 0]
    if dec and num_actions > 2:
        wrong = [0] * T
        wrong[dec[0]] = next(a for a in range(1, num_actions) if a != gt[dec[0]])
        out.append(wrong)
    if dec and num_actions == 2:  # acting where the ground truth says hold
        hold = [i for i in range(T) if gt[i] == 0]
        if hold:
            early = [0] * T
            early[hold[-1]] = 1
            out.append(early)
    out.append([1] + [0] * (T - 1))
    out.append([0] + [num_actions - 1] * (T - 1))
    out += [list(rng.choice(num_actions, size=T, p=[0.8] + [0.2 / (num_actions - 1)] * (num_actions - 1)))
            for _ in range(3)]
    return out


def check_trials(task, cases, env_kw=None, seed=0, n_steps=N_STEPS):
    """cases: list of (forced trial params, {period: steps} or None). Every case under every
    action script, in both envs at sigma = 0 (when the task has sigma): the whole trial's noise-free
    obs and gt, then obs, reward, new_trial, gt, performance and trial_step at each step until the
    trial ends. Returns the number of (case, script) pairs checked."""
    rng = np.random.default_rng(seed)
    env, new_trials, _ = runner(task, N_ENVS, n_steps)
    kw = dict(env_kw or {})
    if "sigma" in type(env).kwargs:
        kw["sigma"] = 0.0
    ng_env = ngym(task, seed=seed, **kw)
    _, params = make_jax_env(task, **kw)
    rows = []  # (forced, durations, actions, ob_ref, gt_ref)
    for forced, durations in cases:
        u = force_ngym_trial(ng_env, durations, **forced)
        ob_ref, gt_ref = u.ob.copy(), np.asarray(u.gt).copy()
        # the port gets every period's length of neurogym's trial (sampled ones included)
        steps = {p: u.end_ind[p] - u.start_ind[p] if p in u.start_ind else 0 for p in env.periods}
        for actions in action_scripts(rng, gt_ref, env.num_actions):
            rows.append((forced, steps, actions, ob_ref, gt_ref))
    n_real = len(rows)
    assert n_real <= N_ENVS, f"{n_real} (case, script) pairs: at most {N_ENVS}"
    rows += [rows[0]] * (N_ENVS - n_real)  # padding, not checked
    forced = {k: np.array([r[0][k] for r in rows]) for k in rows[0][0]}
    durations = {k: np.array([r[1][k] for r in rows], np.int32) for k in env.periods}
    states = new_trials(jax.random.split(jax.random.PRNGKey(seed), N_ENVS), params, forced, durations)
    script = np.zeros((n_steps, N_ENVS), np.int32)
    for i, r in enumerate(rows):
        assert len(r[2]) <= n_steps, f"trial of {len(r[2])} steps: raise n_steps"
        script[: len(r[2]), i] = r[2]
    obs0, out = port_run(task, 3, seed=seed, script=script, states=states, n_steps=n_steps, **kw)
    lengths = np.asarray(states.ends[:, -1])
    for i, (forced_i, dur_i, actions, ob_ref, gt_ref) in enumerate(rows[:n_real]):
        T = len(gt_ref)
        where = f"{task} {env_kw} {forced_i} {dur_i} T={T} actions={actions}"
        assert lengths[i] == T, where
        np.testing.assert_allclose(obs0[i], ob_ref[0], atol=1e-6, err_msg=where)
        if not any(actions):  # timeout: the whole noise-free trial and its gt are visible
            np.testing.assert_allclose(out["obs"][: T - 1, i], ob_ref[1:], atol=1e-6, err_msg=where)
            np.testing.assert_array_equal(out["gt"][:T, i], gt_ref, err_msg=where)
        force_ngym_trial(ng_env, {p: d for p, d in dur_i.items() if p in env.default_timing}, **forced_i)
        ng = []  # (obs, reward, new_trial, gt, performance) of each step until the trial ends
        for a in actions:
            ob_n, r_n, _, _, info_n = ng_env.step(int(a))
            ng.append((ob_n.copy(), r_n, info_n["new_trial"], info_n["gt"], info_n.get("performance", 0)))
            if info_n["new_trial"]:
                break
        else:
            raise AssertionError(f"{where}: neurogym did not end the trial")
        n = len(ng)
        ob_n, r_n, new_n, gt_n, perf_n = (np.array(x) for x in zip(*ng))
        # the new-trial step shows step 0 of a random next trial in both: not compared
        np.testing.assert_allclose(out["obs"][: n - 1, i], ob_n[: n - 1], atol=1e-6, err_msg=where)
        np.testing.assert_allclose(out["reward"][:n, i], r_n, atol=1e-6, err_msg=where)
        np.testing.assert_array_equal(out["new_trial"][:n, i], new_n, err_msg=where)
        np.testing.assert_array_equal(out["gt"][:n, i], gt_n, err_msg=where)
        np.testing.assert_array_equal(out["trial_step"][:n, i], np.arange(n), err_msg=where)
        assert not out["done"][:n, i].any()
        # within float32 rounding: a fractional performance (PostDecisionWager's 0.7) is a Python float there
        assert abs(out["performance"][n - 1, i] - perf_n[-1]) < 1e-6 and out["num_tr"][n - 1, i] == 2, where
    return n_real


# --------------------------------------------------------------------------------------------
# 2. Noise statistics per period and channel
# --------------------------------------------------------------------------------------------
def ngym_residuals(task, kw, n_trials, forced_keys, seed=0, has_sigma=True):
    """{(period, channel): residuals} of neurogym's ob buffers minus those of a noise-free twin given
    the same trial parameters (forced_keys of the trial dict) and durations."""
    twin_kw = dict(kw, sigma=0.0) if has_sigma else kw
    env, twin = ngym(task, seed=seed, **kw), ngym(task, seed=seed + 1, **twin_kw)
    u, v = env.unwrapped, twin.unwrapped
    out: dict = {}
    for _ in range(n_trials):
        trial = u.new_trial()
        durations = {p: int(round(d / u.dt)) for p, d in u._duration.items() if p in u.start_ind}
        force_ngym_trial(twin, durations, **{k: trial[k] for k in forced_keys})
        res = u.ob.astype(np.float64) - v.ob
        for p in u.start_ind:
            seg = res[u.start_ind[p]:u.end_ind[p]]
            for c in range(res.shape[1]):
                out.setdefault((p, c), []).append(seg[:, c])
    return {k: np.concatenate(v) for k, v in out.items()}


def check_noise(task, noisy, env_kw=None, n_ngym=150, n_steps=N_STEPS, forced_keys=None):
    """noisy: {period: channels} where neurogym adds N(0, sigma^2 / dt) noise. Checks the std of
    obs minus its noise-free value per (period, channel) in both envs (and their ratio), and exact
    zeros everywhere else."""
    kw = dict(env_kw or {})
    env, _, _ = runner(task, N_ENVS, n_steps)
    _, params = make_jax_env(task, **kw)
    expected = float(params.sigma) / math.sqrt(float(params.dt))
    keys = env.trial_keys if forced_keys is None else forced_keys
    ng = ngym_residuals(task, kw, n_ngym, keys, has_sigma="sigma" in type(env).kwargs)
    _, out = port_run(task, 1, n_steps=n_steps, **kw)  # always fixate
    res = out["obs"].astype(np.float64) - out["clean"]
    pt = {(p, c): res[..., c][out["period"] == i] for i, p in enumerate(env.periods) for c in range(res.shape[-1])}
    for (p, c), r_ng in ng.items():
        if r_ng.size == 0:
            continue
        r_p = pt[(p, c)]
        if c not in noisy.get(p, ()):
            assert np.abs(r_ng).max() < 1e-6 and np.abs(r_p).max() < 1e-6, (task, p, c)
            continue
        assert r_p.size > 30, f"{task}: too few port samples in {p}: raise n_steps"
        for r in (r_ng, r_p):  # each against sigma / sqrt(dt): SE(std) / std = 1 / sqrt(2 n)
            assert abs(r.std() / expected - 1) < 5 / math.sqrt(2 * r.size), (task, p, c, r.std(), r.size)
            assert abs(r.mean()) < 5 * expected / math.sqrt(r.size), (task, p, c)
        se = math.sqrt(1 / (2 * r_ng.size) + 1 / (2 * r_p.size))
        assert abs(math.log(r_p.std() / r_ng.std())) < 5 * se, (task, p, c)
        assert abs(stats.kurtosis(r_p)) < 5 * math.sqrt(24 / r_p.size)  # Gaussian tails


# --------------------------------------------------------------------------------------------
# 3. Trial-length distributions
# --------------------------------------------------------------------------------------------
def port_lengths(task, kw, n_batches, seed=0):
    _, new_trials, _ = runner(task, N_ENVS)
    _, params = make_jax_env(task, **kw)
    keys = jax.random.split(jax.random.PRNGKey(seed), n_batches * N_ENVS).reshape(n_batches, N_ENVS, -1)
    return np.concatenate([np.asarray(new_trials(k, params, {}, {}).ends[:, -1]) for k in keys])


def ngym_lengths(task, kw, n, seed=0):
    u = ngym(task, seed=seed, **kw).unwrapped
    out = np.empty(n, int)
    for i in range(n):
        u.new_trial()
        out[i] = u.ob.shape[0]
    return out


def two_sample_chi2_p(a, b):
    """p-value of a chi-square test that two integer samples share one distribution."""
    vals = np.union1d(a, b)
    table = np.array([[np.sum(a == v) for v in vals], [np.sum(b == v) for v in vals]])
    keep = table.sum(0) >= 10  # sparse tail values pooled into one bin
    if (~keep).any():
        table = np.concatenate([table[:, keep], table[:, ~keep].sum(1, keepdims=True)], 1)
    if table.shape[1] == 1:
        return 1.0
    return stats.chi2_contingency(table)[1]


def length_bounds(task, kw):
    _, params = make_jax_env(task, **kw)
    return (sum(int(p.min_steps) for p in params.timing), sum(int(p.max_steps) for p in params.timing))


def check_lengths(task, env_kw=None, n_batches=8, n_ngym=1500, seed=0):
    """Trial lengths of the port and of neurogym: same distribution, within the advertised bounds."""
    kw = dict(env_kw or {})
    pt = port_lengths(task, kw, n_batches, seed)
    ng = ngym_lengths(task, kw, n_ngym, seed)
    assert two_sample_chi2_p(pt, ng) > 1e-3, (task, kw, np.unique(pt, return_counts=True),
                                              np.unique(ng, return_counts=True))
    lo, hi = length_bounds(task, kw)
    assert lo <= min(pt.min(), ng.min()) and max(pt.max(), ng.max()) <= hi, (task, lo, hi)
    return pt, ng


# --------------------------------------------------------------------------------------------
# 4. Closed loop
# --------------------------------------------------------------------------------------------
def port_closed_loop(task, pid, max_len, seed=0, policy=None, env_kw=None, n_steps=N_STEPS, carry_size=0):
    """[trials, (reward, performance, steps)] of the first n_steps // max_len trials of each env."""
    trials_per_env = n_steps // max_len
    _, out = port_run(task, pid, seed=seed, n_steps=n_steps, policy=policy, carry_size=carry_size,
                      **(env_kw or {}))
    r, new, perf, tstep = out["reward"], out["new_trial"], out["performance"], out["trial_step"]
    rows = []
    for e in range(N_ENVS):
        ends = np.flatnonzero(new[:, e])
        assert ends.size >= trials_per_env, f"{task}: env {e} ended {ends.size} trials: raise max_len"
        ends = ends[:trials_per_env]  # the first K trials of each env: no length bias
        starts = np.concatenate([[0], ends[:-1] + 1])
        csum = np.concatenate([[0.0], np.cumsum(r[:, e], dtype=np.float64)])
        rows.append(np.stack([csum[ends + 1] - csum[starts], perf[ends, e], tstep[ends, e] + 1.0], 1))
        assert np.all(tstep[ends, e] + 1 == ends - starts + 1)
    return np.concatenate(rows)


def ngym_closed_loop(task, policy, n_trials, seed=0, ngym_policy=None, env_kw=None):
    """Same rows from neurogym (the first trial dropped: reset consumed its step 0)."""
    env = ngym(task, seed=seed, **(env_kw or {}))
    u = env.unwrapped
    n_act = int(env.action_space.n)
    rng = np.random.default_rng(seed)
    ob = u.ob[u.t_ind]
    rows, rew, steps = [], 0.0, 0
    while len(rows) < n_trials + 1:
        if policy == "random":
            a = int(rng.integers(n_act))
        elif policy == "fixate":
            a = 0
        else:
            a = int(u.gt_now) if ngym_policy is None else int(ngym_policy(u, ob, rng))
        ob, r, _, _, info = env.step(a)
        rew += r
        steps += 1
        if info["new_trial"]:
            rows.append((rew, info.get("performance", 0), steps))
            rew, steps = 0.0, 0
    return np.array(rows[1:], float)


def check_closed_loop(task, max_len, policies=("random", "fixate", "oracle"), n_steps=N_STEPS,
                      n_ngym=1000, policy=None, ngym_policy=None, env_kw=None, carry_size=0):
    """Reward per trial, performance and steps per trial of each policy: port vs neurogym within 4
    standard errors. `policy`/`ngym_policy` replace the oracle (JAX, with memory: (obs, state,
    params, key, carry[carry_size]) -> (action, carry); neurogym: (env.unwrapped, obs, rng) -> action,
    keeping any memory in a closure, reset where env.unwrapped.t_ind == 0). max_len: a bound on a trial's steps
    that holds for nearly all trials (each env runs n_steps // max_len trials). Returns {policy: (port performance, number of port trials)}."""
    perf = {}
    for name in policies:
        pid = POLICIES.index(name)
        pt = port_closed_loop(task, pid, max_len, seed=pid, policy=policy, env_kw=env_kw, n_steps=n_steps,
                              carry_size=carry_size)
        ng = ngym_closed_loop(task, name, n_ngym, seed=pid, ngym_policy=ngym_policy, env_kw=env_kw)
        for j, what in enumerate(("reward per trial", "performance", "steps per trial")):
            z = z_of(pt[:, j], ng[:, j])
            assert abs(z) < 4, (f"{task} {name} {what}: port {pt[:, j].mean():.4f} "
                                f"neurogym {ng[:, j].mean():.4f} z={z:.2f}")
        perf[name] = (float(pt[:, 1].mean()), pt.shape[0])
    return perf


def check_table_figure(task, measured, figure):
    """A task-table figure (random or ceiling performance) agrees with the measured one (mean,
    number of trials) within 4 standard errors (+0.01 for the figure's rounding)."""
    mean, n = measured
    tol = 4 * math.sqrt(max(figure * (1 - figure), 1e-4) / n) + 0.01
    assert abs(mean - figure) < tol, (task, mean, figure)
