"""Fidelity of the ReadySetGo-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "ReadySetGo-v0"
MAX_LEN = 56  # 1 + (10..18) + 1 + 2 * (10..18) steps at the defaults (dt = 80)


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(gain=g), dict(measure=m)) for g, m in ((1, 10), (1, 13), (1, 18), (2, 10), (3, 11))]
    pc.check_trials(TASK, cases)
    # options: gain and prod_margin, other dt, timing (a longer ready cue) and rewards
    pc.check_trials(TASK, [({}, dict(measure=m)) for m in (12, 20)],
                    dict(gain=2, prod_margin=0.05, dt=50, timing={"fixation": 200, "ready": 160, "set": 100},
                         rewards={"abort": -0.5, "correct": 2.0, "fail": -1.0}))


def test_no_noise():
    # (pc.check_noise keys periods by name, and neurogym's `ready` overlaps the port's `measure`)
    ng = pc.ngym_residuals(TASK, {}, 30, ("gain",), has_sigma=False)
    assert max(np.abs(r).max() for r in ng.values() if r.size) == 0
    _, out = pc.port_run(TASK, 1)
    np.testing.assert_array_equal(out["obs"], out["clean"])


def test_trial_lengths():
    _, params = make_jax_env(TASK)
    pt = pc.port_lengths(TASK, {}, n_batches=8)
    ng = pc.ngym_lengths(TASK, {}, 800)
    assert pc.two_sample_chi2_p(pt, ng) > 1e-3
    # fixation 1 + measure M + set 1 + production 2 M, M in 10..18 (neurogym's uniform(800, 1500) ms)
    assert set(np.unique(pt)) == set(np.unique(ng)) == {2 + 3 * m for m in range(10, 19)}


def random_performance(dt=80.0, lo=800.0, hi=1500.0, margin=0.2):
    """The uniformly random policy's performance at gain 1: M = floor(U(lo, hi) / dt) steps of
    measure; the first press (probability 1/2 per step) comes at production step j w.p. 2^-(j+1)
    (j < 2 M, else a timeout), t_prod = (j + 1) dt (from the start of set), and it is correct when
    |t_prod - M dt| <= margin M dt + 25."""
    total = 0.0
    for m in range(int(lo // dt), int(np.ceil(hi / dt))):
        p_m = (min(hi, (m + 1) * dt) - max(lo, m * dt)) / (hi - lo)
        hits = [j for j in range(2 * m) if abs((j + 1) * dt - m * dt) <= margin * m * dt + 25]
        total += p_m * sum(2.0 ** -(j + 1) for j in hits)
    return total


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, n_ngym=500)  # long trials: 500 neurogym trials a policy
    meta = TASK_META[TASK]
    assert round(random_performance(), 3) == meta.random
    pc.check_table_figure(TASK, perf["random"], meta.random)
    # the gt-following (scripted) policy presses one step late (neurogym's quirk: eps = dt), which is
    # still within the margin for every measure
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)
    assert meta.ceiling == 1.0 and perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"production": 100}), "production"),
                     (dict(gain=1.5), "gain"), (dict(timing={"ready": ("uniform", (80, 200))}), "ready"),
                     (dict(timing={"ready": 1000}), "ready"), (dict(rewards={"miss": 1.0}), "miss")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
    env, params = make_jax_env(TASK)
    with pytest.raises(ValueError, match="measure"):
        env.new_trial(jax.random.PRNGKey(0), params, measure=800)
