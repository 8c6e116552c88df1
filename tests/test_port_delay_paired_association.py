"""Fidelity of the DelayPairedAssociation-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import pytest

from collector.jax_envs import TASK_META, make_jax_env
from tests import port_checks as pc

TASK = "DelayPairedAssociation-v0"
MAX_LEN = 45  # 0 + 10 + 10 + 10 + 10 + 5 steps at the defaults
PAIRS = ((1, 3), (1, 4), (2, 3), (2, 4))
GO = {p: int((p[1] - p[0]) % 2 == 0) for p in PAIRS}


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(pair=p, ground_truth=GO[p]), None) for p in PAIRS]
    # a forced ground truth that disagrees with the pair (neurogym does not recompute it); a fixation period
    cases += [(dict(pair=(1, 3), ground_truth=0), dict(fixation=2)), (dict(pair=(2, 3), ground_truth=1), None)]
    pc.check_trials(TASK, cases)
    # options: other rewards, dt and timing
    pc.check_trials(TASK, [(dict(pair=p, ground_truth=GO[p]), None) for p in PAIRS[:2]],
                    dict(dt=50, rewards={"miss": -2.0, "fail": -0.5, "correct": 0.5, "abort": -0.3},
                         timing={"fixation": 150, "stim1": 300, "delay_aft_stim": 250, "decision": 200}))


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=30)


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    # random: a go trial (half of them) is answered when any of the 5 decision steps draws action 1
    assert meta.random == round(0.5 * (1 - 2**-5), 3)
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)  # the gt-following policy is the best one
    assert perf["fixate"][0] == 0


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(abort=True), "abort"), (dict(timing={"delay": 100}), "delay"),
                     (dict(rewards={"bonus": 1.0}), "bonus")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
