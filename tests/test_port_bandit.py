"""Fidelity of the Bandit-v0 port against the real neurogym (tests/port_checks.py).

A trial is one step whose reward is drawn when the action is taken, so the step-by-step check uses
arms that always or never pay; the arm probabilities are checked in closed loop (reward per trial
of each policy, port vs neurogym) and per arm against p."""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "Bandit-v0"


def test_one_step_trials():
    cases = [(p, r, a) for p in ((1, 0), (0, 1), (1, 1)) for r in ((2.0, 3.0), (1.0, 1.0)) for a in (0, 1)]
    n = pc.N_ENVS
    rows = cases + [cases[0]] * (n - len(cases))
    env, new_trials, _ = pc.runner(TASK)
    _, params = make_jax_env(TASK)
    forced = dict(p=np.array([c[0] for c in rows], np.float32), rewards=np.array([c[1] for c in rows], np.float32))
    states = new_trials(jax.random.split(jax.random.PRNGKey(0), n), params, forced, {})
    script = np.zeros((pc.N_STEPS, n), np.int32)
    script[0] = [c[2] for c in rows]
    obs0, out = pc.port_run(TASK, 3, script=script, states=states)
    u = pc.ngym(TASK)
    for i, (p, r, a) in enumerate(cases):
        u.unwrapped.new_trial(p=list(p), rewards=list(r))
        ob, reward, _, _, info = u.step(a)
        assert "gt" not in info and info["new_trial"] and info["performance"] == 0
        np.testing.assert_array_equal(obs0[i], np.zeros(1))
        np.testing.assert_array_equal(out["obs"][0, i], ob)
        assert out["reward"][0, i] == reward == p[a] * r[a], (p, r, a)
        assert out["new_trial"][0, i] and out["performance"][0, i] == 0 and out["gt"][0, i] == 0
        assert out["trial_step"][0, i] == 0 and out["num_tr"][0, i] == 2 and not out["done"][0, i]
    # every step ends a trial, and later trials are back to the env's own p (0.5, 0.5)
    assert out["new_trial"].all() and (out["trial_step"] == 0).all()
    later = out["reward"][1:]
    assert set(np.unique(later)) == {0.0, 1.0} and abs(later.mean() - 0.5) < 4 * 0.5 / np.sqrt(later.size)


def test_arm_probabilities_in_closed_loop_and_task_table():
    p = (0.2, 0.9)
    # random: mean(p) per trial; always arm 0: p[0] (reward per trial vs neurogym)
    perf = pc.check_closed_loop(TASK, 1, policies=("random", "fixate"), env_kw=dict(p=p), n_ngym=1500)
    assert all(v[0] == 0 for v in perf.values())  # neurogym never sets performance
    for pid, want in ((1, p[0]), (0, np.mean(p))):
        rows = pc.port_closed_loop(TASK, pid, 1, seed=pid, env_kw=dict(p=p))
        assert abs(rows[:, 0].mean() - want) < 4 * np.sqrt(want * (1 - want) / len(rows)), (pid, want)
    # always arm 1 (a scripted action): p[1], port vs neurogym
    _, out = pc.port_run(TASK, 3, seed=3, script=np.ones((pc.N_STEPS, pc.N_ENVS), np.int32), p=p)
    u = pc.ngym(TASK, seed=3, p=p)
    ngym = np.array([u.step(1)[1] for _ in range(1500)])
    for x in (out["reward"].ravel(), ngym):
        assert abs(x.mean() - p[1]) < 4 * np.sqrt(p[1] * (1 - p[1]) / x.size), x.mean()
    assert abs(pc.z_of(out["reward"].ravel(), ngym)) < 4
    meta = TASK_META[TASK]
    pc.check_table_figure(TASK, pc.check_closed_loop(TASK, 1, policies=("random",), n_ngym=1500)["random"], meta.random)
    assert meta.random == 0.0 and meta.ceiling is None and meta.target is None


def test_more_arms():
    env, params = make_jax_env(TASK, n=3, p=(0.0, 1.0, 0.35))
    assert env.num_actions == 3

    @functools.partial(jax.jit, compiler_options=pc.FAST_COMPILE)
    def rewards(keys, action):
        state = env.reset(keys[0], params)[1]
        return jax.vmap(lambda k: env.step(k, state, action, params)[2])(keys)

    keys = jax.random.split(jax.random.PRNGKey(1), 4000)
    u = pc.ngym(TASK, n=3, p=(0.0, 1.0, 0.35))
    for a, want in enumerate((0.0, 1.0, 0.35)):
        port = np.asarray(rewards(keys, a))
        ngym = np.array([u.step(a)[1] for _ in range(1000)])
        for x in (port, ngym):
            assert abs(x.mean() - want) <= 4 * np.sqrt(want * (1 - want) / x.size), (a, want, x.mean())


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(rewards=[1.0, 2.0]), "rewards"), (dict(p=(0.5,)), "p"),
                     (dict(n=0), "n")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
    env, params = make_jax_env(TASK, timing={"fixation": 100})  # accepted and ignored, as in neurogym
    with pytest.raises(ValueError, match="ground_truth"):
        env.new_trial(jax.random.PRNGKey(0), params, ground_truth=1)
