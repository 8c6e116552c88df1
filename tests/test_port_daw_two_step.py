"""Fidelity of the DawTwoStep-v0 port against the real neurogym (tests/port_checks.py).

Neurogym's new_trial ignores keyword arguments; its trials are replayed here by giving the port the
trial neurogym drew (transition, reward, hi_state) and resetting neurogym to step 0 of that same
trial. Neurogym's task has no `ob` array, which port_checks' closed loop reads once at the start: a
test-only zero array stands in for it (no policy here reads it)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from collector.ngym_compat import import_neurogym
from collector.tasks.daw_two_step import HIGH_P, LOW_P, P_COMMON, P_SWITCH
from tests import port_checks as pc

TASK = "DawTwoStep-v0"
SCRIPTS = [(0,), (1, 0), (1, 1), (1, 2), (2, 0), (2, 2)]


@pytest.fixture(autouse=True)
def ngym_has_an_ob(monkeypatch):
    cls = import_neurogym().envs.native.dawtwostep.DawTwoStep
    monkeypatch.setattr(cls, "ob", np.zeros((2, 3), np.float32), raising=False)


def test_trials_step_by_step():
    u = pc.ngym(TASK).unwrapped
    trials = [dict(u.new_trial()) for _ in range(16)]
    rows = [(tr, s) for tr in trials for s in SCRIPTS]
    n = pc.N_ENVS
    padded = rows + [rows[0]] * (n - len(rows))
    env, new_trials, _ = pc.runner(TASK)
    _, params = make_jax_env(TASK)
    forced = dict(transition=np.array([r[0]["transition"][1:] for r in padded], np.int32),
                  reward=np.array([r[0]["reward"] for r in padded], np.float32),
                  hi_state=np.array([r[0]["hi_state"] for r in padded], np.int32))
    states = new_trials(jax.random.split(jax.random.PRNGKey(0), n), params, forced, {})
    script = np.zeros((pc.N_STEPS, n), np.int32)
    for i, (_, s) in enumerate(padded):
        script[: len(s), i] = s
    obs0, out = pc.port_run(TASK, 3, script=script, states=states)
    for i, (trial, s) in enumerate(rows):
        u.trial, u.ground_truth, u.state1_high_reward = trial, trial["hi_state"] + 1, trial["hi_state"] == 0
        u.t = u.t_ind = 0
        u.performance = 0
        np.testing.assert_array_equal(obs0[i], [1, 0, 0])
        for k, a in enumerate(s):
            ob, r, _, _, info = u.step(a)
            where = (trial, s, k)
            np.testing.assert_array_equal(out["obs"][k, i], ob, err_msg=str(where))
            assert abs(out["reward"][k, i] - r) < 1e-6 and out["new_trial"][k, i] == info["new_trial"], where
            assert out["trial_step"][k, i] == k and out["gt"][k, i] == (trial["hi_state"] + 1 if k == 0 else 0)
            assert "gt" not in info
            if info["new_trial"]:
                assert out["performance"][k, i] == info["performance"] and k == len(s) - 1, where
                break
        else:
            raise AssertionError(f"neurogym did not end the trial {where}")


def test_cross_trial_statistics():
    """Switches of the high-reward state, transitions and reward probabilities, port vs neurogym
    and vs neurogym's constants; the port's run starts from fresh envs (state 1 high)."""
    script = np.ones((pc.N_STEPS, pc.N_ENVS), np.int32)  # action 1 at both stages: 2-step trials
    _, out = pc.port_run(TASK, 3, seed=5, script=script)
    hi = out["gt"][0::2] - 1  # [trial, env]
    reached = np.argmax(out["obs"][0::2], -1)  # 1 or 2
    paid = out["reward"][0::2] > 0
    u = pc.ngym(TASK, seed=5).unwrapped
    ng = [u.new_trial() for _ in range(6000)]
    ng_hi = np.array([t["hi_state"] for t in ng])
    ng_rew = np.array([t["reward"] for t in ng]) > 0
    pairs = [
        ("switch", (hi[1:] != hi[:-1]).ravel(), ng_hi[1:] != ng_hi[:-1], P_SWITCH),
        ("common transition", (reached == 1).ravel(), np.array([t["transition"][1] == 1 for t in ng]), P_COMMON),
        ("high state pays", paid[reached - 1 == hi], ng_rew[np.arange(len(ng)), ng_hi], HIGH_P),
        ("low state pays", paid[reached - 1 != hi], ng_rew[np.arange(len(ng)), 1 - ng_hi], LOW_P),
    ]
    for what, port, ngym, p in pairs:
        for x in (port, ngym):
            assert abs(x.mean() - p) < 4 * np.sqrt(p * (1 - p) / x.size), (what, x.mean(), p, x.size)
        assert abs(pc.z_of(port, ngym)) < 4, what
    # the start: state 1 is high, then P(hi_state = 0 at trial k) = 0.5 + 0.5 (1 - 2 p_switch)^k
    k = np.arange(1, hi.shape[0] + 1)
    per_env = (hi[:40] == 0).mean(0)
    want = np.mean(0.5 + 0.5 * (1 - 2 * P_SWITCH) ** k[:40])
    assert abs(per_env.mean() - want) < 4 * per_env.std(ddof=1) / np.sqrt(per_env.size) + 1e-3, (per_env.mean(), want)


def test_observations_do_not_depend_on_the_high_reward_state():
    """Why the table has no ceiling: under the same keys and actions, two envs that differ only in
    which state is high show the same observations at every step (over many trials)."""
    env, params = make_jax_env(TASK)

    @functools.partial(jax.jit, compiler_options=pc.FAST_COMPILE)
    def rollout(key, hi_state):
        state = env.new_trial(key, params, hi_state=hi_state)

        def body(s, k):
            ka, ke = jax.random.split(k)
            obs, s, _, _, _ = env.step(ke, s, jax.random.randint(ka, (), 0, 3), params)
            return s, obs
        return jax.lax.scan(body, state, jax.random.split(key, 300))[1]

    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(rollout(key, 0), rollout(key, 1))


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, 2, policies=("random", "oracle"), n_ngym=1500,
                                ngym_policy=lambda u, ob, rng: u.ground_truth if u.t == 0 else 0)
    # fixating aborts every trial at step 0: constant rows (z_of would compare float32 with float64 exactly)
    port = pc.port_closed_loop(TASK, 1, 2, seed=1)
    ngym = pc.ngym_closed_loop(TASK, "fixate", 200, seed=1)
    for rows in (port, ngym):
        np.testing.assert_allclose(rows, np.tile([-0.1, 0.0, 1.0], (len(rows), 1)), atol=1e-6)
    meta = TASK_META[TASK]
    assert meta.random == round(1 / 3, 3) and meta.ceiling is None and meta.target is None
    pc.check_table_figure(TASK, perf["random"], meta.random)
    assert perf["oracle"][0] == 1.0  # knowing the hidden state (not observable) is always right


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(rewards={"fail": -1.0}), "fail")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
    env, params = make_jax_env(TASK, timing={"stage1": 100})  # accepted and ignored, as in neurogym
    with pytest.raises(ValueError, match="ground_truth"):
        env.new_trial(jax.random.PRNGKey(0), params, ground_truth=1)
