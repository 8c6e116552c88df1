"""Fidelity of the EconomicDecisionMaking-v0 port against the real neurogym (tests/port_checks.py).

Neurogym's task builds no ground-truth array (its _step reports gt = 0) and labels the juice order
with strings; a test-only wrapper of its _new_trial (below) takes the juice order as the port's
number (0: ("a", "b"), 1: ("b", "a")) so that forced values can be batched, and gives the trial an
all-zero `gt` array (what neurogym reports on every step) so that the generic step-by-step check
runs. The scripted policy (the port's gt_now) picks the more valuable offer in `decision`."""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from collector.ngym_compat import import_neurogym
from collector.tasks.economic_decision_making import OFFERS
from tests import port_checks as pc

TASK = "EconomicDecisionMaking-v0"
MAX_LEN = 41  # 15 + (10..19) + 7 steps at the defaults
ORDERS = {0: ("a", "b"), 1: ("b", "a")}


@pytest.fixture(autouse=True)
def ngym_takes_numbers(monkeypatch):
    cls = import_neurogym().envs.native.economicdecisionmaking.EconomicDecisionMaking
    original = cls._new_trial

    def _new_trial(self, **kwargs):
        if "juice" in kwargs and not isinstance(kwargs["juice"], tuple):
            kwargs["juice"] = ORDERS[int(kwargs["juice"])]
        if "offer" in kwargs:
            kwargs["offer"] = tuple(int(x) for x in kwargs["offer"])
        trial = original(self, **kwargs)
        self.gt = np.zeros(self.ob.shape[0], np.int64)  # what neurogym reports as info["gt"]
        return trial

    monkeypatch.setattr(cls, "_new_trial", _new_trial)


def ngym_scripted(u, ob, rng):
    if not u.in_period("decision"):
        return 0
    n_b, n_a = u.trial["offer"]
    r_a, r_b = n_a * u.R_A, n_b * u.R_B
    r1, r2 = (r_a, r_b) if u.trial["juice"][0] == "a" else (r_b, r_a)
    return 1 if r1 > r2 else 2


def test_noise_free_trials_and_step_semantics():
    cases = [(dict(juice=j, offer=tuple(o)), None) for j in (0, 1) for o in OFFERS[[0, 1, 3, 7, 8]]]
    pc.check_trials(TASK, cases)
    # options: other rewards (R_A and R_B follow "correct"), dt and timing of the same kinds
    pc.check_trials(TASK, [(dict(juice=j, offer=(2, 1)), dict(offer_on=3)) for j in (0, 1)],
                    dict(dt=50, rewards={"correct": 0.5, "abort": -0.3},
                         timing={"fixation": 300, "offer_on": ("uniform", (200, 400)), "decision": 200}))


def test_juice_labels_and_values():
    env, params = make_jax_env(TASK)

    @functools.partial(jax.jit, compiler_options=pc.FAST_COMPILE)
    def labelled(key):  # neurogym's string labels are converted while tracing
        trial = env.new_trial(key, params, juice=("b", "a"), offer=(6, 1)).trial
        return trial, env.values(trial, params), env.best_choice(trial, params)

    trial, (r1, r2), best = labelled(jax.random.PRNGKey(0))
    assert int(trial["juice"]) == 1 and list(np.asarray(trial["offer"])) == [6, 1]
    # offer 1 = 6 units of B, offer 2 = 1 unit of A
    assert abs(float(r1) - 6 * 0.22 / 2.2) < 1e-6 and abs(float(r2) - 0.22) < 1e-6 and int(best) == 1
    with pytest.raises(ValueError, match="juice"):  # traced only: nothing to compile
        jax.eval_shape(lambda k: env.new_trial(k, params, juice=("a", "c")), jax.random.PRNGKey(0))


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=30)


def test_trial_lengths():
    pc.check_lengths(TASK, n_batches=4, n_ngym=600)


def test_closed_loop_and_task_table():
    # the port's oracle follows gt_now, the better offer in decision: the scripted policy
    perf = pc.check_closed_loop(TASK, MAX_LEN, ngym_policy=ngym_scripted, n_ngym=500)
    meta = TASK_META[TASK]
    # random: the first non-zero action in the 7 decision steps picks either offer, and exactly one
    # offer is the better one: 0.5 * (1 - 3^-7)
    assert abs(meta.random - round(0.5 * (1 - 3.0 ** -7), 3)) < 1e-9
    pc.check_table_figure(TASK, perf["random"], meta.random)
    assert perf["oracle"][0] == meta.ceiling == 1.0 and perf["fixate"][0] == 0


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"offer": 100}), "offer"),
                     (dict(rewards={"fail": -1.0}), "fail")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
