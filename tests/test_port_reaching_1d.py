"""Fidelity of the Reaching1D-v0 port against the real neurogym (tests/port_checks.py).

The reaching tasks move an arm that the observation shows (neurogym's post_step), so whole trials
are not in neurogym's ob buffer and their performance is a fraction: `check_steps` below compares
them step by step (obs, reward, new_trial, gt, trial_step, and the trial's performance to 1e-5)
under action scripts, and the closed loop uses a scripted reaching policy (`scripted`)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env, period_index
from tests import port_checks as pc

TASK = "Reaching1D-v0"
MAX_LEN = 10  # 5 + 5 steps at the defaults


def scripted(obs, state, params, key, carry):
    """Hold during fixation (the target is not shown yet); in reach, step toward the rewarded
    direction int(ground_truth) while that brings the arm closer (|difference| > 0.025 rad)."""
    diff = jnp.mod(jnp.trunc(state.trial["ground_truth"]) - state.arm + jnp.pi, 2 * jnp.pi) - jnp.pi
    go = (period_index(state) == 1) & (jnp.abs(diff) > 0.025)
    return jnp.where(go, jnp.where(diff > 0, 1, 2), 0).astype(jnp.int32), carry


def ngym_scripted(u, ob, rng):
    """The same policy on neurogym's env (u.state: the arm angle)."""
    if not u.in_period("reach"):
        return 0
    diff = np.mod(int(u.trial["ground_truth"]) - u.state + np.pi, 2 * np.pi) - np.pi
    return 0 if abs(diff) <= 0.025 else (1 if diff > 0 else 2)


def check_steps(task, cases, env_kw=None, policy=scripted, seed=0):
    """cases: (forced trial params, {period: steps} or None); every case under several action
    scripts (stay, +, -, alternating, random), port vs neurogym step by step until the trial ends."""
    rng = np.random.default_rng(seed)
    kw = dict(env_kw or {})
    env, new_trials, _ = pc.runner(task, pc.N_ENVS, pc.N_STEPS, policy)
    ng_env = pc.ngym(task, seed=seed, **kw)
    _, params = make_jax_env(task, **kw)
    rows = []
    for forced, durations in cases:
        u = pc.force_ngym_trial(ng_env, durations, **forced)
        steps = {p: u.end_ind[p] - u.start_ind[p] for p in env.periods}
        n = u.ob.shape[0]
        for actions in ([0] * n, [1] * n, [2] * n, [1, 2] * n, *[rng.integers(0, 3, n) for _ in range(3)]):
            rows.append((forced, steps, [int(a) for a in actions[:n]]))
    n_real = len(rows)
    rows += [rows[0]] * (pc.N_ENVS - n_real)
    forced = {k: np.array([r[0][k] for r in rows], np.float32) for k in rows[0][0]}
    durations = {p: np.array([r[1][p] for r in rows], np.int32) for p in env.periods}
    states = new_trials(jax.random.split(jax.random.PRNGKey(seed), pc.N_ENVS), params, forced, durations)
    script = np.zeros((pc.N_STEPS, pc.N_ENVS), np.int32)
    for i, r in enumerate(rows):
        script[: len(r[2]), i] = r[2]
    obs0, out = pc.port_run(task, 3, seed=seed, script=script, states=states, policy=policy, **kw)
    for i, (forced_i, dur_i, actions) in enumerate(rows[:n_real]):
        where = f"{task} {kw} {forced_i} {dur_i} actions={actions}"
        u = pc.force_ngym_trial(ng_env, dur_i, **forced_i)
        ob_0 = u.post_step(u.ob[0].copy(), 0, False, False, {})[0]  # step 0 as neurogym shows it
        np.testing.assert_allclose(obs0[i], ob_0, atol=1e-5, err_msg=where)
        ng = []
        for a in actions:
            ob_n, r_n, _, _, info = ng_env.step(a)
            ng.append((ob_n.copy(), r_n, info["new_trial"], info["gt"], info.get("performance", 0)))
            if info["new_trial"]:
                break
        n = len(ng)
        assert n == len(actions) and ng[-1][2], where  # trials end only by timeout
        ob_n, r_n, new_n, gt_n, perf_n = (np.array(x) for x in zip(*ng))
        np.testing.assert_allclose(out["obs"][: n - 1, i], ob_n[: n - 1], atol=1e-5, err_msg=where)
        np.testing.assert_allclose(out["reward"][:n, i], r_n, atol=1e-5, err_msg=where)
        np.testing.assert_array_equal(out["new_trial"][:n, i], new_n, err_msg=where)
        np.testing.assert_array_equal(out["gt"][:n, i], gt_n, err_msg=where)
        np.testing.assert_array_equal(out["trial_step"][:n, i], np.arange(n), err_msg=where)
        assert abs(out["performance"][n - 1, i] - perf_n[-1]) < 1e-5, where
    return n_real


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(ground_truth=g), None) for g in (0.3, 2.5, 3.4, 4.1, 6.2)]
    cases += [(dict(ground_truth=g), dict(fixation=2, reach=7)) for g in (1.2, 5.7)]
    check_steps(TASK, cases)
    check_steps(TASK, [(dict(ground_truth=g), None) for g in (0.7, 3.9)],
                dict(dt=50, rewards={"correct": 2.0, "fail": -0.5}, timing={"fixation": 300, "reach": 400}))


def test_other_ring_size():
    """dim_ring changes the shapes: one trial at dim_ring = 8 (stay at pi), against neurogym."""
    env, params = make_jax_env(TASK, dim_ring=8)
    assert env.obs_dim == 16 and env.num_actions == 3
    u = pc.force_ngym_trial(pc.ngym(TASK, dim_ring=8), ground_truth=2.5)
    ref = np.stack([u.post_step(row.copy(), 0, False, False, {})[0] for row in u.ob])

    @functools.partial(jax.jit, compiler_options=pc.FAST_COMPILE)
    def trial(params, ts):
        state = env.new_trial(jax.random.PRNGKey(0), params, ground_truth=2.5)
        return jax.vmap(lambda t: env.get_obs(state.replace(t=t), params))(ts)

    np.testing.assert_allclose(np.asarray(trial(params, jnp.arange(ref.shape[0]))), ref, atol=1e-5)


def test_no_noise():
    check_no_noise(TASK)


def check_no_noise(task):
    """Neurogym's ob buffers equal their noise-free twin's; the port's obs equal its noise-free obs
    (pc.check_noise would compile a second runner: the file's runner has the scripted policy)."""
    ng = pc.ngym_residuals(task, {}, 30, ("ground_truth",), has_sigma=False)
    assert max(np.abs(r).max() for r in ng.values() if r.size) == 0
    _, out = pc.port_run(task, 0, policy=scripted)  # random actions: the arm moves
    np.testing.assert_array_equal(out["obs"], out["clean"])


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}


def fixate_performance():
    """The arm stays at pi: reach reward max(1 - d, -0.1) with d the circular distance from pi to
    k = int(ground_truth), k = 0..5 w.p. 1 / (2 pi) each and 6 w.p. (2 pi - 6) / (2 pi): the
    trial's performance is (r + 0.1) / 1.1. Returns its mean and standard deviation over trials."""
    p = np.array([1 / (2 * np.pi)] * 6 + [(2 * np.pi - 6) / (2 * np.pi)])
    d = np.array([min(abs(np.pi - k), 2 * np.pi - abs(np.pi - k)) for k in range(7)])
    x = (np.maximum(1 - d, -0.1) + 0.1) / 1.1
    mean = float(p @ x)
    return mean, float(np.sqrt(p @ x**2 - mean**2))


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, policy=scripted, ngym_policy=ngym_scripted)
    meta = TASK_META[TASK]
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)  # the scripted reaching policy
    mean, std = fixate_performance()  # 0.174
    assert abs(perf["fixate"][0] - mean) < 4 * std / np.sqrt(perf["fixate"][1])


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"go": 100}), "go"),
                     (dict(rewards={"abort": 1.0}), "abort"), (dict(dim_ring=61), "dim_ring")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
