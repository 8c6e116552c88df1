"""Fidelity of the DelayComparison-v0 port against the real neurogym (tests/port_checks.py)."""
from __future__ import annotations

import jax.numpy as jnp
import pytest

from collector.jax_envs import TASK_META, make_jax_env, period_index
from tests import port_checks as pc

TASK = "DelayComparison-v0"
MAX_LEN = 26  # 5 + 5 + 10 + 5 + 1 steps at the defaults


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(ground_truth=g, vpair=vp), None) for g in (1, 2) for vp in [(18, 10), (34, 26)]]
    cases += [(dict(ground_truth=2, vpair=(22, 14)), dict(fixation=1, delay=3, decision=2))]
    pc.check_trials(TASK, cases)
    # options: other pairs, rewards, dt and timing (shapes and timing kinds as the defaults': the
    # compiled runner is reused)
    pairs = [(5, 1.5), (3, 9), (2, 4), (8, 6), (7, 7.5)]
    pc.check_trials(TASK, [(dict(ground_truth=g, vpair=vp), None) for g in (1, 2) for vp in pairs[:2]],
                    dict(dt=50, vpairs=pairs, rewards={"fail": -1.0, "correct": 0.5, "abort": -0.3},
                         timing={"delay": 350, "decision": 200}))


def test_noise_on_both_channels_in_the_stimulus_periods():
    pc.check_noise(TASK, noisy={"stimulus1": (0, 1), "stimulus2": (0, 1)})


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}
    pc.check_lengths(TASK, dict(timing={"delay": ("truncated_exponential", (600, 300, 3000))}))


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    pc.check_table_figure(TASK, perf["random"], meta.random)
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def observer(obs, state, params, key, carry):
    """The scripted policy of the table's ceiling: the mean of the stimulus channel in stimulus1
    against that in stimulus2 (carry: sums and counts), answered at the decision step."""
    p = period_index(state)
    carry = jnp.where(state.t == 0, 0.0, carry)
    carry = carry + jnp.stack([jnp.where(p == 1, obs[1], 0.0), (p == 1).astype(jnp.float32),
                               jnp.where(p == 3, obs[1], 0.0), (p == 3).astype(jnp.float32)])
    first = carry[0] / jnp.maximum(carry[1], 1.0) > carry[2] / jnp.maximum(carry[3], 1.0)
    return jnp.where(p == 4, jnp.where(first, 1, 2), 0), carry


def ngym_observer():
    acc = {}

    def policy(u, ob, rng):
        if u.t_ind == 0:
            acc.clear()
        for p in ("stimulus1", "stimulus2"):
            if u.in_period(p):
                acc.setdefault(p, []).append(ob[1])
        if not u.in_period("decision"):
            return 0
        return 1 if sum(acc["stimulus1"]) / len(acc["stimulus1"]) > sum(acc["stimulus2"]) / len(acc["stimulus2"]) else 2

    return policy


def test_ceiling_of_the_scripted_observer():
    perf = pc.check_closed_loop(TASK, MAX_LEN, policies=("oracle",), policy=observer, carry_size=4,
                                ngym_policy=ngym_observer(), n_steps=1024, n_ngym=600)
    pc.check_table_figure(TASK, perf["oracle"], TASK_META[TASK].ceiling)


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(dim_ring=3), "dim_ring"), (dict(timing={"stimulus": 100}), "stimulus"),
                     (dict(vpairs=[(1, 1)]), "vpairs"), (dict(vpairs=[1, 2]), "vpairs")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
