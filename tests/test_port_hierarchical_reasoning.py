"""Fidelity of the HierarchicalReasoning-v0 port against the real neurogym (tests/port_checks.py).

Neurogym computes long_interval from a draw it reports (interval) compared with a threshold plus a
uniform it does not report, and ignores a forced long_interval; a test-only wrapper of its
_new_trial (below) applies a forced long_interval (and the decision's ground truth that follows
from it), so both envs can be given the same trial."""
from __future__ import annotations

import functools

import jax

import numpy as np
import pytest

from collector.jax_envs import TASK_META, make_jax_env
from collector.ngym_compat import import_neurogym
from tests import port_checks as pc

TASK = "HierarchicalReasoning-v0"
MAX_LEN = 45  # (4..7) + 10 + (4..8) + 1 + (5..11) + 1 + 7 steps at the defaults


@pytest.fixture(autouse=True)
def ngym_takes_long_interval(monkeypatch):
    cls = import_neurogym().envs.native.hierarchicalreasoning.HierarchicalReasoning
    original = cls._new_trial

    def _new_trial(self, long_interval=None, **kwargs):
        trial = original(self, **{k: int(v) for k, v in kwargs.items()})
        if long_interval is not None:
            pro = int(bool(long_interval)) == trial["rule"]
            trial.update(long_interval=bool(long_interval), pro_choice=pro)
            self.set_groundtruth(trial["stimulus"] if pro else 1 - trial["stimulus"], period="decision", where="choice")
        return trial

    monkeypatch.setattr(cls, "_new_trial", _new_trial)


def cases():
    return [(dict(rule=r, stimulus=s, long_interval=li), None) for r in (0, 1) for s in (0, 1) for li in (0, 1)]


def test_noise_free_trials_and_step_semantics():
    pc.check_trials(TASK, cases())
    # options: rewards, dt and timing, of the same kinds and table sizes as the defaults' (no
    # recompilation): the delay's 9 values halved give the same 7 distinct lengths at dt = 50
    pc.check_trials(TASK, cases()[::3], dict(dt=50, rewards={"fail": -1.0, "correct": 0.5, "abort": -0.3},
                                            timing={"rule_target": 300, "decision": 400,
                                                    "fixation": ("truncated_exponential", (300, 200, 500)),
                                                    "delay": (265, 305, 345, 385, 425, 465, 505, 545, 585)}))


@functools.lru_cache(maxsize=None)
def trial_chain(n_envs=8, n_trials=400):
    """The trials a port env samples one after the other (the block carried), as its step does:
    trial dicts and delay lengths [n_trials, n_envs]."""
    env, params = make_jax_env(TASK)

    @functools.partial(jax.jit, compiler_options=pc.FAST_COMPILE)
    def chain(key):
        def one(k):
            state = env.new_trial(k, params)

            def body(s, kk):
                nxt = env._sample_trial(jax.random.uniform(kk, (env._n_u,)), params, s.num_tr + 1, block=s.block)
                return nxt, (s.trial, s.ends[4] - s.ends[3])
            return jax.lax.scan(body, state, jax.random.split(k, n_trials))[1]
        return jax.vmap(one, out_axes=1)(jax.random.split(key, n_envs))

    trial, delay = chain(jax.random.PRNGKey(7))
    return jax.tree.map(np.asarray, trial), np.asarray(delay)


def run_lengths(rules):
    """Lengths of the runs of equal rules, the first and the unfinished last one left out."""
    change = np.flatnonzero(np.diff(rules)) + 1
    return np.diff(change)


def test_blocks_and_intervals_across_trials():
    trial, delay = trial_chain()
    u = pc.ngym(TASK, seed=3).unwrapped
    ng = [u.new_trial() for _ in range(2500)]
    ng_rules = np.array([t["rule"] for t in ng])
    assert (trial["rule"][0] == 1).all() and ng_rules[0] == 1  # a fresh env starts with rule 1
    port_runs = np.concatenate([run_lengths(trial["rule"][:, e]) for e in range(trial["rule"].shape[1])])
    ng_runs = run_lengths(ng_rules)
    assert port_runs.size > 150 and ng_runs.size > 150
    for runs in (port_runs, ng_runs):  # block sizes uniform on 10..20
        assert runs.min() >= 10 and runs.max() <= 20
    assert pc.two_sample_chi2_p(port_runs, ng_runs) > 1e-3
    # the interval that sets the answer: long with probability 6/9 at dt = 100; it is another draw
    # than the delay shown (same law, independent)
    for x in (trial["long_interval"].ravel(), np.array([t["long_interval"] for t in ng])):
        assert abs(x.mean() - 6 / 9) < 4 * np.sqrt(6 / 9 * 3 / 9 / x.size), x.mean()
    ng_interval = np.array([t["interval"] for t in ng]) // 100
    assert pc.two_sample_chi2_p(trial["interval"].ravel() // 100, ng_interval) > 1e-3
    assert pc.two_sample_chi2_p(delay.ravel(), ng_interval) > 1e-3
    assert (delay.ravel() != trial["interval"].ravel() // 100).mean() > 0.5
    # the answer: pro when long_interval == rule; choice = stimulus if pro else the other side
    pro = trial["long_interval"].astype(int) == trial["rule"]
    np.testing.assert_array_equal(trial["pro_choice"], pro)
    np.testing.assert_array_equal(trial["choice"], np.where(pro, trial["stimulus"], 1 - trial["stimulus"]))


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=30)


def test_trial_lengths():
    pc.check_lengths(TASK, n_batches=3, n_ngym=500)


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, n_ngym=500)
    meta = TASK_META[TASK]
    # random: the last rule_target action names the rule (1/5) and the first non-zero decision
    # action is the choice (1/4 of the non-zero ones, some taken with prob 1 - 5^-7)
    assert meta.random == round(0.2 * 0.25 * (1 - 5.0 ** -7), 3) and meta.ceiling is None and meta.target is None
    pc.check_table_figure(TASK, perf["random"], meta.random)
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0  # knowing the hidden rule and interval


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(sigma=1.0), "sigma"), (dict(timing={"flash3": 100}), "flash3"),
                     (dict(timing={"delay": 800}), "delay")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
    env, params = make_jax_env(TASK)
    with pytest.raises(ValueError, match="ground_truth"):
        env.new_trial(jax.random.PRNGKey(0), params, ground_truth=1)

