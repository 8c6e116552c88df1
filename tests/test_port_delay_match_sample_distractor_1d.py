"""Fidelity of the DelayMatchSampleDistractor1D-v0 port against the real neurogym (tests/port_checks.py).

Neurogym draws the distractor directions with rng.uniform inside _new_trial after applying the
forced values, so forcing test<i> has no effect there; a test-only wrapper of its _new_trial (below)
replays forced distractors in place of those draws, so both envs can be given the same trial."""
from __future__ import annotations

import pytest

from collector.jax_envs import TASK_META, make_jax_env
from collector.ngym_compat import import_neurogym
from tests import port_checks as pc

TASK = "DelayMatchSampleDistractor1D-v0"
MAX_LEN = 53  # 3 + 5 + 3 * (10 + 5) steps at the defaults


class _Replay:
    """A numpy RandomState stand-in for one _new_trial call: uniform() returns the next queued
    value (None: a real draw); everything else is the real one's."""

    def __init__(self, rng, queue):
        self.rng, self.queue = rng, list(queue)

    def __getattr__(self, name):
        return getattr(self.rng, name)

    def uniform(self, *args):
        x = self.queue.pop(0) if self.queue else None
        return self.rng.uniform(*args) if x is None else x


@pytest.fixture(autouse=True)
def ngym_takes_distractors(monkeypatch):
    cls = import_neurogym().envs.native.delaymatchsample.DelayMatchSampleDistractor1D
    original = cls._new_trial

    def _new_trial(self, test1=None, test2=None, test3=None, **kwargs):
        tests = (test1, test2, test3)
        if all(t is None for t in tests):
            return original(self, **kwargs)
        assert "ground_truth" in kwargs, "forced distractors need a forced ground_truth"
        g = int(kwargs["ground_truth"])
        # the first uniform() is the sample's (overridden by a forced sample), then the distractors'
        queue = [None] + [tests[i - 1] for i in (1, 2, 3) if i != g]
        real = self.rng
        self.rng = _Replay(real, queue)
        try:
            return original(self, **kwargs)
        finally:
            self.rng = real

    monkeypatch.setattr(cls, "_new_trial", _new_trial)


def cases():
    return [(dict(ground_truth=g, sample=s, test1=a, test2=b, test3=c), None)
            for g in (1, 2, 3) for s, a, b, c in ((0.4, 3.0, 5.9, 1.2), (6.1, 0.05, 2.5, 4.4))]


def test_noise_free_trials_and_step_semantics():
    pc.check_trials(TASK, cases())
    # options: rewards, dt and timing (same timing kinds as the defaults: no recompilation)
    pc.check_trials(TASK, [(dict(ground_truth=g, sample=2.0, test1=1.0, test2=4.0, test3=5.0), dict(delay2=1))
                           for g in (1, 2, 3)],
                    dict(dt=50, rewards={"fail": -0.5, "correct": 0.5, "abort": -0.3},
                         timing={"fixation": 100, "delay1": 300, "test2": 150, "delay3": 200}))


def test_no_noise():
    pc.check_noise(TASK, noisy={}, n_ngym=20)


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}


def test_closed_loop_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN)
    meta = TASK_META[TASK]
    # random: a match at test g counts only if all 10 + 15 (g - 1) steps from delay1 to test g draw
    # action 0 (any 1 ends the trial with `fail`), then one of the 5 steps of test g draws a 1
    random = sum(2.0 ** -(10 + 15 * (g - 1)) for g in (1, 2, 3)) / 3 * (1 - 2.0**-5)
    assert meta.random == round(random, 3)
    pc.check_table_figure(TASK, perf["random"], meta.random)
    pc.check_table_figure(TASK, perf["oracle"], meta.ceiling)  # acting at the match: a scripted policy
    assert perf["oracle"][0] == 1.0 and perf["fixate"][0] == 0


def test_shortest_trial_and_unsupported_arguments():
    env, params = make_jax_env(TASK)
    assert env.shortest_trial(params) == 3 + 5 + 1  # the first step of delay1 can end a trial
    for kw, name in [(dict(abort=True), "abort"), (dict(timing={"delay": 100}), "delay"),
                     (dict(rewards={"miss": 1.0}), "miss"), (dict(dim_ring=4), "dim_ring")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
