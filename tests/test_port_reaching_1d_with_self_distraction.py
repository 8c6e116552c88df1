"""Fidelity of the Reaching1DWithSelfDistraction-v0 port against the real neurogym (the step-by-step
check, the scripted reaching policy and the no-noise check of tests/test_port_reaching_1d.py)."""
from __future__ import annotations

import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc
from tests.test_port_reaching_1d import check_no_noise, check_steps, fixate_performance, ngym_scripted, scripted

TASK = "Reaching1DWithSelfDistraction-v0"
MAX_LEN = 10  # 5 + 5 steps at the defaults


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(ground_truth=g), None) for g in (0.3, 2.5, 3.4, 4.1, 6.2)]
    cases += [(dict(ground_truth=g), dict(fixation=2, reach=7)) for g in (1.2, 5.7)]
    check_steps(TASK, cases)
    check_steps(TASK, [(dict(ground_truth=g), None) for g in (0.7, 3.9)],
                dict(dt=50, rewards={"correct": 2.0, "fail": -0.5}, timing={"fixation": 300, "reach": 400}))


def test_no_noise():
    check_no_noise(TASK)


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, policy=scripted, ngym_policy=ngym_scripted)
    meta = TASK_META[TASK]
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)  # the scripted reaching policy
    mean, std = fixate_performance()  # the reward rule is Reaching1D's
    assert abs(perf["fixate"][0] - mean) < 4 * std / perf["fixate"][1] ** 0.5


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(dim_ring=16), "dim_ring"),
                     (dict(timing={"go": 100}), "go"), (dict(rewards={"abort": 1.0}), "abort")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
