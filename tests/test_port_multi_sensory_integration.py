"""Fidelity of the MultiSensoryIntegration-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "MultiSensoryIntegration-v0"
MAX_LEN = 11  # 3 + 7 + 1 steps at the defaults (750 ms of stimulus floor to 7 steps)


def cases():
    return [(dict(ground_truth=g, coh=c, coh_prop=p), None) for g in (0, 1) for c in (5, 50) for p in (0.3, 0.9)]


def test_noise_free_trials_and_step_semantics():
    pc.check_trials(TASK, cases())
    # options: rewards, dt and timing (same timing kinds as the defaults: no recompilation)
    pc.check_trials(TASK, [(dict(ground_truth=g, coh=15, coh_prop=0.6), dict(fixation=1)) for g in (0, 1)],
                    dict(dt=50, rewards={"correct": 0.5, "abort": -0.3}, timing={"stimulus": 400, "decision": 150}))


def test_another_ring_size():
    env, params = make_jax_env(TASK, dim_ring=3, sigma=0.0)
    assert (env.obs_dim, env.num_actions) == (7, 4)
    u = pc.ngym(TASK, dim_ring=3, sigma=0.0).unwrapped

    def view(forced):  # noise-free obs [T, D] and gt [T] of a forced trial
        state = env.new_trial(jax.random.PRNGKey(0), params, **forced)
        at = jax.vmap(lambda t: state.replace(t=t))(jnp.arange(MAX_LEN))
        return jax.vmap(env.get_obs, in_axes=(0, None))(at, params), jax.vmap(env.gt_now)(at)

    view = jax.jit(view, compiler_options=pc.FAST_COMPILE)
    for g, c, p in ((2, 50, 0.25), (1, 15, 0.8)):
        u.new_trial(ground_truth=g, coh=c, coh_prop=p)
        obs, gt = view(dict(ground_truth=g, coh=np.float32(c), coh_prop=np.float32(p)))
        np.testing.assert_allclose(obs, u.ob, atol=1e-6)
        np.testing.assert_array_equal(gt, u.gt)


def test_noise_on_every_channel_in_stimulus():
    pc.check_noise(TASK, noisy={"stimulus": (0, 1, 2, 3, 4)}, n_ngym=100)


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    # random: the one decision step draws the correct one of 3 actions with probability 1/3
    assert meta.random == round(1 / 3, 3)
    pc.check_table_figure(TASK, perf["random"], meta.random)
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_ideal_observer_ceiling():
    """The table's ceiling, derived. The summed differences of the two channels of each modality
    over the n stimulus steps are D1 ~ N(2 a s n, 2 n sd^2), D2 ~ N(2 b s n, 2 n sd^2) with
    a = coh coh_prop / 200, b = coh (1 - coh_prop) / 200, s = +-1 the direction and sd the per-step
    noise (sigma / sqrt(dt), which test_noise confirms in both envs). The Bayes rule chooses s = +1
    iff sum over (coh, p) of w sinh((a D1 + b D2) / sd^2) > 0 with w symmetric in p <-> 1 - p;
    pairing p with 1 - p, each pair is 2 sinh((a + b)(D1 + D2) / (2 sd^2)) cosh(.), of the sign of
    D1 + D2 since a + b = coh / 200 > 0. So the ideal observer takes the sign of D1 + D2 ~
    N(s coh n / 100, 4 n sd^2) and is right with probability Phi(coh sqrt(n) / (200 sd))."""
    env, params = make_jax_env(TASK)
    n = int(params.timing[env.periods.index("stimulus")].min_steps)
    assert n == int(params.timing[env.periods.index("stimulus")].max_steps) == 7
    sd = float(params.sigma) / math.sqrt(float(params.dt))
    cohs = np.asarray(params.cohs, float)
    assert list(cohs) == [5, 15, 50]
    ceiling = float(np.mean(norm.cdf(cohs * math.sqrt(n) / (200 * sd))))
    meta = TASK_META[TASK]
    assert meta.ceiling_by == "ideal observer" and meta.ceiling == round(ceiling, 3)


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(abort=True), "abort"), (dict(cohs=[1, 2]), "cohs"), (dict(rewards={"fail": -1.0}), "fail"),
                     (dict(dim_ring=0), "dim_ring"), (dict(timing={"delay": 100}), "delay")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
