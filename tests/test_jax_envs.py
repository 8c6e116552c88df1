"""Fidelity of the first three pure-JAX task ports (collector/tasks/) against the real neurogym.

Every statistical test compares with neurogym itself (or an analytic law derived from its source),
never the port with itself, and uses fixed seeds, so the outcome is deterministic. Tolerances are
4-5 standard errors of the quantity compared, computed from the sample sizes.

To keep the file fast on 2 CPU cores, the port side of nearly every test runs through one jitted
runner per task (PORT_ENVS vmapped envs, a lax.scan over steps, a policy chosen by a traced id:
random, always-fixate, ideal observer or a scripted action table), compiled once and reused.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from collector.jax_envs import make_jax_env, period_index
from collector.ngym_compat import make_env
from tests.port_checks import FAST_COMPILE

# the three ports this file checks (the later ones have tests/test_port_*.py)
JAX_TASKS = PDM, DMS, CDM = ("PerceptualDecisionMaking-v0", "DelayMatchSample-v0", "ContextDecisionMaking-v0")
# the task table's figures (random-policy and ideal-observer performance at the defaults)
TABLE_PERF = {PDM: (0.337, 0.898), DMS: (0.495, 1.0), CDM: (0.332, 0.945)}
POLICIES = ("random", "fixate", "ideal", "scripted")
PORT_ENVS, PORT_TRIALS_PER_ENV = 256, 16  # 4096 trials per closed-loop run
MAX_T = {PDM: 22, DMS: 32, CDM: 40}  # longest trial at the defaults
NG_TRIALS = 2000  # neurogym trials per closed-loop run (after dropping the first)


# --------------------------------------------------------------------------------------------
# neurogym side
# --------------------------------------------------------------------------------------------
def ngym(task, seed=0, **kw):
    env = make_env(task, **kw)
    env.unwrapped.seed(seed)
    env.reset()
    return env


def force_ngym_trial(env, timing=None, **forced):
    """Start a forced trial at step 0 of a neurogym env (as step() does at a trial boundary)."""
    u = env.unwrapped
    if timing:
        u.timing.update(timing)
    u.new_trial(**forced)
    u.t = u.t_ind = 0
    u.performance = 0
    return u


# --------------------------------------------------------------------------------------------
# port side: one compiled runner per task
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def port(task):
    """(env, new_trials, run) for `task` at its default option shapes.

    new_trials(keys[N], params, forced{k: [N]}, durations{p: [N]}) -> batched states;
    run(key, params, pid, states, script[S, N]) -> per-step outputs of PORT_ENVS envs started at
    `states` (step-0 obs drawn with noise, as reset does) under policy POLICIES[pid]."""
    env, _ = make_jax_env(task)
    last = len(env.periods) - 1
    n_steps = MAX_T[task] * PORT_TRIALS_PER_ENV

    def new_trials(keys, params, forced, durations):
        return jax.vmap(lambda k, f, d: env.new_trial(k, params, durations=d, **f))(keys, forced, durations)

    def policy(pid, rand, obs, state, acc, scripted):
        p = period_index(state)
        acc = jnp.where(state.t == 0, 0.0, acc)
        d = obs[1] - obs[2]  # PDM: evidence; CDM: modality 1 (context 0); DMS: sample / test side
        if task == DMS:
            acc = acc + jnp.stack([jnp.where(p == 1, d, 0.0), jnp.where(p == 3, d, 0.0)])
            choice = jnp.where(acc[0] * acc[1] > 0, 1, 2)
        else:
            acc = acc + jnp.stack([jnp.where(p == 1, d, 0.0), 0.0])
            choice = jnp.where(acc[0] > 0, 1, 2)
        ideal = jnp.where(p == last, choice, 0)
        return jnp.stack([rand, 0, ideal, scripted])[pid], acc

    def run(key, params, pid, state, script):
        clean = params.replace(sigma=jnp.zeros_like(params.sigma))
        k0, key = jax.random.split(key)
        z0 = jax.random.normal(k0, (PORT_ENVS, env.noise_dim))
        obs0 = jax.vmap(env.get_obs, in_axes=(0, None, 0))(state, params, z0)
        acc = jnp.zeros((PORT_ENVS, 2))

        def body(carry, xs):
            obs, state, acc = carry
            k, scripted = xs
            ka, ke = jax.random.split(k)
            rand = jax.random.randint(ka, (PORT_ENVS,), 0, env.num_actions)
            a, acc = jax.vmap(policy, in_axes=(None, 0, 0, 0, 0, 0))(pid, rand, obs, state, acc, scripted)
            obs, state, r, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(ke, PORT_ENVS), state, a, params)
            ref = jax.vmap(env.get_obs, in_axes=(0, None))(state, clean)
            out = dict(obs=obs, clean=ref, period=jax.vmap(period_index)(state), reward=r, done=done,
                       new_trial=info["new_trial"], gt=info["gt"], performance=info["performance"],
                       trial_step=info["trial_step"], num_tr=state.num_tr)
            return (obs, state, acc), out

        _, out = jax.lax.scan(body, (obs0, state, acc), (jax.random.split(key, n_steps), script))
        return obs0, out

    return env, jax.jit(new_trials, compiler_options=FAST_COMPILE), jax.jit(run, compiler_options=FAST_COMPILE)


def port_run(task, pid, seed=0, script=None, states=None, **kw):
    env, new_trials, run = port(task)
    _, params = make_jax_env(task, **kw)
    key = jax.random.PRNGKey(seed)
    if states is None:
        key, k = jax.random.split(key)
        states = new_trials(jax.random.split(k, PORT_ENVS), params, {}, {})
    if script is None:
        script = np.zeros((MAX_T[task] * PORT_TRIALS_PER_ENV, PORT_ENVS), np.int32)
    obs0, out = run(key, params, pid, states, jnp.asarray(script, jnp.int32))
    return np.asarray(obs0), {k: np.asarray(v) for k, v in out.items()}


def z_of(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    if se == 0:
        return 0.0 if a.mean() == b.mean() else math.inf
    return (a.mean() - b.mean()) / se


# --------------------------------------------------------------------------------------------
# 1. Noise-free observations, ground truth and step semantics, step by step, forced trials
# --------------------------------------------------------------------------------------------
def conditions(task):
    if task == PDM:
        return [dict(ground_truth=g, coh=c) for g in (0, 1) for c in (0, 6.4, 12.8, 25.6, 51.2)]
    if task == DMS:
        return [dict(ground_truth=g, sample_theta=s) for g in (1, 2) for s in (0.0, np.pi)]
    return [dict(ground_truth=g, other_choice=o, coh_1=c1, coh_2=c2)
            for g in (1, 2) for o in (1, 2) for c1 in (5, 15, 50) for c2 in (5, 50)]


def scripts(rng, T, gt_dec):
    """Action sequences: fixate throughout (timeout), correct / wrong choice at decision, fixation
    breaks, choices outside decision (ignored), random."""
    other = 2 if gt_dec == 1 else 1
    out = [[0] * T, [0] * (T - 1) + [gt_dec], [0] * (T - 1) + [other],
           [1, 2] + [0] * (T - 3) + [gt_dec], [0] + [2] * (T - 1)]
    out += [list(rng.choice(3, size=T, p=[0.8, 0.1, 0.1])) for _ in range(3)]
    return out  # out[0] must stay the all-fixate script


def compare_trials(task, cases, env_kw=None, seed=0):
    """cases: list of (forced trial params, delay steps or None). Runs every case under every
    script in both envs (sigma = 0) and compares obs, gt, reward, new_trial and performance at each
    step until the trial ends, and the whole trial's noise-free obs and gt buffers."""
    rng = np.random.default_rng(seed)
    kw = dict(env_kw or {}, sigma=0.0)
    ng_env = ngym(task, seed=seed, **kw)
    env, new_trials, _ = port(task)
    _, params = make_jax_env(task, **kw)
    rows = []  # (case, script, reference buffers)
    for forced, delay in cases:
        timing = {"delay": delay * kw.get("dt", 100)} if delay is not None else None
        u = force_ngym_trial(ng_env, timing=timing, **forced)
        ob_ref, gt_ref = u.ob.copy(), u.gt.copy()
        for actions in scripts(rng, len(gt_ref), int(gt_ref[-1])):
            rows.append((forced, delay, timing, actions, ob_ref, gt_ref))
    n_real = len(rows)
    assert n_real <= PORT_ENVS
    rows += [rows[0]] * (PORT_ENVS - n_real)  # padding, not checked
    forced = {k: np.array([r[0][k] for r in rows]) for k in rows[0][0]}
    durations = {"delay": np.array([r[1] for r in rows], np.int32)} if rows[0][1] is not None else {}
    states = new_trials(jax.random.split(jax.random.PRNGKey(seed), PORT_ENVS), params, forced, durations)
    S = MAX_T[task] * PORT_TRIALS_PER_ENV
    script = np.zeros((S, PORT_ENVS), np.int32)
    for i, r in enumerate(rows):
        assert len(r[3]) <= S
        script[: len(r[3]), i] = r[3]
    obs0, out = port_run(task, 3, seed=seed, script=script, states=states, **kw)
    lengths = np.asarray(states.ends[:, -1])
    for i, (forced_i, _, timing, actions, ob_ref, gt_ref) in enumerate(rows[:n_real]):
        T = len(gt_ref)
        where = f"{task} {env_kw} {forced_i} T={T} actions={actions}"
        assert lengths[i] == T, where
        np.testing.assert_allclose(obs0[i], ob_ref[0], atol=1e-6, err_msg=where)
        if not any(actions):  # timeout: the whole noise-free trial and its gt are visible
            np.testing.assert_allclose(out["obs"][: T - 1, i], ob_ref[1:], atol=1e-6, err_msg=where)
            np.testing.assert_array_equal(out["gt"][:T, i], gt_ref, err_msg=where)
        force_ngym_trial(ng_env, timing=timing, **forced_i)
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
        # after a trial end both show step 0 of a random next trial: the fixation cue only
        np.testing.assert_allclose(out["obs"][:n, i], ob_n, atol=1e-6, err_msg=where)
        np.testing.assert_allclose(out["reward"][:n, i], r_n, atol=1e-6, err_msg=where)
        np.testing.assert_array_equal(out["new_trial"][:n, i], new_n, err_msg=where)
        np.testing.assert_array_equal(out["gt"][:n, i], gt_n, err_msg=where)
        np.testing.assert_array_equal(out["trial_step"][:n, i], np.arange(n), err_msg=where)
        assert not out["done"][:n, i].any()
        assert out["performance"][n - 1, i] == perf_n[-1] and out["num_tr"][n - 1, i] == 2, where


@pytest.mark.parametrize("task", JAX_TASKS)
def test_noise_free_trials_and_step_semantics_match_neurogym(task):
    delay = 6 if task == CDM else None
    compare_trials(task, [(f, delay) for f in conditions(task)])


def test_cdm_delay_lengths_match_neurogym():
    conds = conditions(CDM)
    compare_trials(CDM, [(conds[(7 * i) % len(conds)], d) for i, d in enumerate((3, 4, 5, 8, 11, 17, 23, 29))])


def test_options_abort_rewards_dt_timing_match_neurogym():
    compare_trials(PDM, [(dict(ground_truth=g, coh=12.8), None) for g in (0, 1)],
                   dict(abort=True, rewards={"abort": -0.5, "fail": -1.0, "correct": 0.5}))
    compare_trials(PDM, [(dict(ground_truth=0, coh=51.2), None)], dict(dt=50, timing={"stimulus": 730, "delay": 260}))
    compare_trials(DMS, [(dict(ground_truth=g, sample_theta=np.pi), None) for g in (1, 2)],
                   dict(dt=20, timing={"delay": 330}))
    compare_trials(CDM, [(dict(ground_truth=2, other_choice=1, coh_1=15, coh_2=50), 8)],
                   dict(abort=True, rewards={"correct": 2.0}))


def test_cdm_explicit_context_observations_match_neurogym():
    env, params = make_jax_env(CDM, use_expl_context=True, sigma=0.0)
    assert env.obs_dim == 7
    ng_env = ngym(CDM, use_expl_context=True, sigma=0.0)

    @jax.jit
    def trial_view(forced):
        state = env.new_trial(jax.random.PRNGKey(0), params, durations={"delay": 5}, **forced)
        at = jax.vmap(lambda t: state.replace(t=t))(jnp.arange(MAX_T[CDM]))
        return jax.vmap(env.get_obs, in_axes=(0, None))(at, params), jax.vmap(env.gt_now)(at)

    for ctx in (0, 1):
        for forced in conditions(CDM)[::3]:
            forced = dict(forced, context=ctx)
            u = force_ngym_trial(ng_env, timing={"delay": 500}, **forced)
            obs, gt = (np.asarray(x)[: u.ob.shape[0]] for x in trial_view(forced))
            np.testing.assert_allclose(obs, u.ob, atol=1e-6, err_msg=str(forced))
            np.testing.assert_array_equal(gt, u.gt)


def test_reset_starts_first_trial_at_step_zero():
    for task in JAX_TASKS:
        env, params = make_jax_env(task)
        reset = jax.jit(env.reset)
        expected = np.zeros(env.obs_dim, np.float32)
        expected[0] = 1.0  # fixation cue, no noise
        for seed in range(3):
            obs, state = reset(jax.random.PRNGKey(seed), params)
            assert int(state.t) == 0 and int(state.num_tr) == 1
            assert obs.shape == (env.obs_dim,) and obs.dtype == jnp.float32
            np.testing.assert_array_equal(np.asarray(obs), expected)


def test_invalid_arguments_raise_value_error_naming_them():
    cases = [
        (("Null-v0",), {}, "Null-v0"),
        ((PDM,), {"foo": 1}, "foo"),
        ((PDM,), {"timing": {"stimulis": 100}}, "stimulis"),
        ((CDM,), {"rewards": {"fail": -1.0}}, "fail"),
        ((DMS,), {"abort": True}, "abort"),
        ((PDM,), {"timing": {"delay": ("until", 3000)}}, "until"),
        ((PDM,), {"timing": {"delay": lambda: 100}}, "delay"),
        ((CDM,), {"impl_context_modality": 2}, "impl_context_modality"),
    ]
    for args, kw, name in cases:
        with pytest.raises(ValueError, match=name):
            make_jax_env(*args, **kw)
    env, params = make_jax_env(PDM)
    with pytest.raises(ValueError, match="cohh"):
        env.new_trial(jax.random.PRNGKey(0), params, cohh=3)


# --------------------------------------------------------------------------------------------
# 2. Noise statistics per period and channel
# --------------------------------------------------------------------------------------------
NOISY = {PDM: {"stimulus"}, DMS: {"sample", "test"}, CDM: {"stimulus"}}


def ngym_residuals(task, kw, n_trials, seed=0):
    """{(period, channel): residuals} of neurogym's ob buffers, noise-free twin subtracted."""
    env, twin = ngym(task, seed=seed, **kw), ngym(task, seed=seed + 1, **dict(kw, sigma=0.0))
    u, v = env.unwrapped, twin.unwrapped
    out: dict = {}
    for _ in range(n_trials):
        trial = u.new_trial()
        v.timing.update(dict(u._duration))  # same durations
        v.new_trial(**{k: val for k, val in trial.items() if k != "test_theta"})
        res = u.ob.astype(np.float64) - v.ob
        for p in u.start_ind:
            seg = res[u.start_ind[p]:u.end_ind[p]]
            for c in range(res.shape[1]):
                out.setdefault((p, c), []).append(seg[:, c])
    return {k: np.concatenate(v) for k, v in out.items()}


def port_residuals(task, kw, seed=0):
    env, _, _ = port(task)
    _, out = port_run(task, 1, seed=seed, **kw)  # always fixate
    res = out["obs"].astype(np.float64) - out["clean"]
    return {(p, c): res[..., c][out["period"] == i] for i, p in enumerate(env.periods) for c in range(res.shape[-1])}


@pytest.mark.parametrize("task,kw", [(PDM, {}), (DMS, {}), (CDM, {}), (PDM, dict(dt=20, sigma=0.5))])
def test_noise_std_per_period_and_channel(task, kw):
    dt, sigma = kw.get("dt", 100), kw.get("sigma", 1.0)
    expected = sigma / math.sqrt(dt)
    ng = ngym_residuals(task, kw, 300 if dt == 100 else 60)
    pt = port_residuals(task, kw)
    for (p, c), r_ng in ng.items():
        if r_ng.size == 0:
            continue
        r_p = pt[(p, c)]
        if not (p in NOISY[task] and c > 0):  # no noise at all: exactly the noise-free value
            assert np.abs(r_ng).max() < 1e-6 and np.abs(r_p).max() < 1e-6, (task, p, c)
            continue
        for r in (r_ng, r_p):  # each against sigma / sqrt(dt): SE(std) / std = 1 / sqrt(2 n)
            assert abs(r.std() / expected - 1) < 5 / math.sqrt(2 * r.size), (task, p, c, r.std(), r.size)
            assert abs(r.mean()) < 5 * expected / math.sqrt(r.size), (task, p, c)
        # and against each other: SE of the log std ratio = sqrt(1 / (2 n1) + 1 / (2 n2))
        se = math.sqrt(1 / (2 * r_ng.size) + 1 / (2 * r_p.size))
        assert abs(math.log(r_p.std() / r_ng.std())) < 5 * se, (task, p, c)
        assert abs(stats.kurtosis(r_p)) < 5 * math.sqrt(24 / r_p.size)  # Gaussian tails


# --------------------------------------------------------------------------------------------
# 3. Trial-length distributions
# --------------------------------------------------------------------------------------------
def port_lengths(task, kw, n_batches, seed=0):
    _, new_trials, _ = port(task)
    _, params = make_jax_env(task, **kw)
    keys = jax.random.split(jax.random.PRNGKey(seed), n_batches * PORT_ENVS).reshape(n_batches, PORT_ENVS, -1)
    return np.concatenate([np.asarray(new_trials(k, params, {}, {}).ends[:, -1]) for k in keys])


def ngym_lengths(task, kw, n, seed=0):
    u = ngym(task, seed=seed, **kw).unwrapped
    out = np.empty(n, int)
    for i in range(n):
        u.new_trial()
        out[i] = u.ob.shape[0]
    return out


def two_sample_chi2_p(a, b):
    vals = np.union1d(a, b)
    table = np.array([[np.sum(a == v) for v in vals], [np.sum(b == v) for v in vals]])
    if table.shape[1] == 1:
        return 1.0
    return stats.chi2_contingency(table)[1]


def gof_p(sample, support, probs):
    """Chi-square goodness of fit, bins merged until each expects >= 5."""
    obs = np.array([np.sum(sample == k) for k in support], float)
    exp = np.asarray(probs) * sample.size
    assert obs.sum() == sample.size, "sample outside the support"
    o, e, ob, eb = [], [], 0.0, 0.0
    for oi, ei in zip(obs, exp):
        ob, eb = ob + oi, eb + ei
        if eb >= 5:
            o.append(ob), e.append(eb)
            ob = eb = 0.0
    o[-1] += ob
    e[-1] += eb
    return stats.chisquare(o, e)[1]


def test_constant_trial_lengths():
    assert set(port_lengths(PDM, {}, 4)) == set(ngym_lengths(PDM, {}, 100)) == {22}
    assert set(port_lengths(DMS, {}, 4)) == set(ngym_lengths(DMS, {}, 100)) == {32}


def test_cdm_delay_distribution_chi_square():
    pt = port_lengths(CDM, {}, 80)  # 20480 trials
    ng = ngym_lengths(CDM, {}, 3000)
    # analytic law: D = floor(x / 100), x ~ Exp(mean 600) truncated to [300, 3000)
    ks = np.arange(3, 30)
    pk = np.exp(-ks / 6) - np.exp(-(ks + 1) / 6)
    pk /= pk.sum()
    assert gof_p(pt - 11, ks, pk) > 1e-3
    assert gof_p(ng - 11, ks, pk) > 1e-3
    assert two_sample_chi2_p(pt, ng) > 1e-3
    assert length_bounds(CDM, {}) == (14, 40) == (pt.min(), pt.max())
    mean = 11 + np.sum(ks * pk)
    assert abs(pt.mean() - mean) < 5 * pt.std() / math.sqrt(pt.size)


@pytest.mark.parametrize("task,kw", [
    (PDM, dict(timing={"stimulus": [500, 1000, 1500, 1000], "delay": ("uniform", (0, 730))})),
    (DMS, dict(dt=20, timing={"delay": ("choice", [200, 333, 1000]), "fixation": ("constant", 110)})),
    (CDM, dict(dt=50, timing={"delay": ("truncated_exponential", (400, 120, 1300))})),
])
def test_other_timing_specs_match_neurogym(task, kw):
    pt = port_lengths(task, kw, 24, seed=1)
    ng = ngym_lengths(task, kw, 2000, seed=1)
    assert set(pt) <= set(range(ng.min(), ng.max() + 1))
    assert two_sample_chi2_p(pt, ng) > 1e-3
    lo, hi = length_bounds(task, kw)  # the advertised bounds hold for both
    assert lo <= min(pt.min(), ng.min()) and max(pt.max(), ng.max()) <= hi


def length_bounds(task, kw):
    _, params = make_jax_env(task, **kw)
    return (sum(int(p.min_steps) for p in params.timing), sum(int(p.max_steps) for p in params.timing))


def test_truncexp_instance_is_accepted():
    from collector.ngym_compat import import_neurogym

    TruncExp = import_neurogym().utils.ngym_random.TruncExp
    kw = dict(timing={"delay": TruncExp(300, 100, 900)})
    assert two_sample_chi2_p(port_lengths(CDM, kw, 24), ngym_lengths(CDM, kw, 2000)) > 1e-3


# --------------------------------------------------------------------------------------------
# 4. Closed loop: random, always-fixate and ideal-observer policies
# --------------------------------------------------------------------------------------------
def port_closed_loop(task, pid, seed=0):
    _, out = port_run(task, pid, seed=seed)
    r, new, perf, tstep = out["reward"], out["new_trial"], out["performance"], out["trial_step"]
    rows = []
    for e in range(PORT_ENVS):
        ends = np.flatnonzero(new[:, e])
        assert ends.size >= PORT_TRIALS_PER_ENV
        ends = ends[:PORT_TRIALS_PER_ENV]  # the first K trials of each env: no length bias
        starts = np.concatenate([[0], ends[:-1] + 1])
        csum = np.concatenate([[0.0], np.cumsum(r[:, e], dtype=np.float64)])
        rows.append(np.stack([csum[ends + 1] - csum[starts], perf[ends, e], tstep[ends, e] + 1.0], 1))
        assert np.all(tstep[ends, e] + 1 == ends - starts + 1)
    return np.concatenate(rows)  # [trials, (reward, performance, steps)]


def ngym_closed_loop(task, policy, n_trials, seed=0):
    env = ngym(task, seed=seed)
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    stim = {PDM: ("stimulus",), DMS: ("sample", "test"), CDM: ("stimulus",)}[task]
    ob = u.ob[u.t_ind]
    acc = np.zeros(2)
    rows, rew, steps = [], 0.0, 0
    while len(rows) < n_trials + 1:
        if u.t_ind == 0:
            acc[:] = 0
        if policy == "random":
            a = int(rng.integers(3))
        elif policy == "fixate":
            a = 0
        else:
            for i, p in enumerate(stim):
                if u.in_period(p):
                    acc[i] += ob[1] - ob[2]
            a = 0
            if u.in_period("decision"):
                a = (1 if acc[0] * acc[1] > 0 else 2) if task == DMS else (1 if acc[0] > 0 else 2)
        ob, r, _, _, info = env.step(a)
        rew += r
        steps += 1
        if info["new_trial"]:
            rows.append((rew, info["performance"], steps))
            rew, steps = 0.0, 0
    return np.array(rows[1:], float)  # drop the first trial (reset consumed its step 0)


@pytest.mark.parametrize("task", JAX_TASKS)
def test_closed_loop_policies_match_neurogym(task):
    for pid, policy in enumerate(POLICIES[:3]):
        pt = port_closed_loop(task, pid, seed=pid)
        ng = ngym_closed_loop(task, policy, NG_TRIALS if policy != "fixate" else NG_TRIALS // 2, seed=pid)
        for j, what in enumerate(("reward per trial", "performance", "steps per trial")):
            z = z_of(pt[:, j], ng[:, j])
            assert abs(z) < 4, (f"{task} {policy} {what}: port {pt[:, j].mean():.4f} "
                                f"neurogym {ng[:, j].mean():.4f} z={z:.2f}")
        perf = pt[:, 1].mean()
        if policy == "fixate":
            assert perf == 0 and np.all(pt[:, 0] == 0) and np.all(ng[:, :2] == 0)
        else:  # and the task table's figures
            ref = TABLE_PERF[task][0 if policy == "random" else 1]
            tol = 4 * math.sqrt(max(ref * (1 - ref), 1e-4) / pt.shape[0]) + 0.01
            assert abs(perf - ref) < tol, (task, policy, perf, ref)
