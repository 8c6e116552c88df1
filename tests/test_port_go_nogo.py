"""Fidelity of the GoNogo-v0 port against the real neurogym (the pattern of every port's test:
tests/port_checks.py holds the machinery, docs/porting.md explains it)."""
from __future__ import annotations

import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "GoNogo-v0"
MAX_LEN = 15  # 0 + 5 + 5 + 5 steps at the defaults


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(ground_truth=g), None) for g in (0, 1)]
    cases += [(dict(ground_truth=g), dict(fixation=2, delay=d)) for g in (0, 1) for d in (0, 3)]
    pc.check_trials(TASK, cases)
    # options: other rewards, dt and timing
    pc.check_trials(TASK, [(dict(ground_truth=g), None) for g in (0, 1)],
                    dict(dt=50, rewards={"miss": -2.0, "fail": -1.0, "correct": 0.5, "abort": -0.3},
                         timing={"fixation": 150, "stimulus": 300, "decision": 250}))


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=30)


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}
    pc.check_lengths(TASK, dict(timing={"delay": ("uniform", (200, 900)), "fixation": [0, 100, 300]}))


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)  # the gt-following policy is the best one
    assert perf["fixate"][0] == 0


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"go": 100}), "go"),
                     (dict(rewards={"bonus": 1.0}), "bonus")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
