"""Fidelity of the ToneDetection-v0 port against the real neurogym (tests/port_checks.py).

Neurogym's new_trial names the trial parameter `condition` but stores it as trial["ground_truth"];
a test-only wrapper (below) lets it take `ground_truth` too, so that the noise check can give a
noise-free twin the same trial."""
from __future__ import annotations

import pytest

from collector.jax_envs import TASK_META, make_jax_env
from collector.ngym_compat import import_neurogym
from tests import port_checks as pc

TASK = "ToneDetection-v0"
MAX_LEN = 40  # 2000 ms at dt = 50


@pytest.fixture(autouse=True)
def ngym_takes_ground_truth(monkeypatch):
    cls = import_neurogym().envs.native.tonedetection.ToneDetection
    original = cls._new_trial

    def _new_trial(self, condition=None, ground_truth=None):
        return original(self, condition if ground_truth is None else ground_truth)

    monkeypatch.setattr(cls, "_new_trial", _new_trial)


def test_noise_free_trials_and_step_semantics():
    pc.check_trials(TASK, [(dict(condition=c), None) for c in range(4)])
    pc.check_trials(TASK, [(dict(condition=c), None) for c in range(4)],
                    dict(dt=25, timing={"stimulus": 1500, "toneTiming": [100, 725, 1450], "toneDur": 100}))


def test_noise_on_every_step():
    pc.check_noise(TASK, noisy={"stimulus": (0,)}, n_ngym=60, forced_keys=("ground_truth",))


def test_trial_lengths():
    pt, ng = pc.check_lengths(TASK, n_batches=1, n_ngym=50)
    assert set(pt) == set(ng) == {MAX_LEN}


def test_closed_loop_no_reward_and_task_table():
    perf = pc.check_closed_loop(TASK, MAX_LEN, n_ngym=100)
    assert all(p == 0 for p, _ in perf.values())
    meta = TASK_META[TASK]
    assert meta.random == 0 and meta.ceiling is None


def test_unsupported_arguments_fail_naming_them():
    for kw, name in [(dict(rewards={"correct": 1.0}), "rewards"), (dict(dt=100), "dt"),
                     (dict(timing={"stimulus": [1000, 2000]}), "stimulus"), (dict(timing={"toneTiming": [1]}), "toneTiming"),
                     (dict(timing={"cue": 100}), "cue")]:
        with pytest.raises(ValueError, match=name):
            make_jax_env(TASK, **kw)
