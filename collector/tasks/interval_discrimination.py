"""IntervalDiscrimination-v0 (neurogym 2.3.1, envs/native/intervaldiscrimination.py).

Two stimuli of random durations are shown one after the other; after a delay the subject reports
which one lasted longer (action 1: the first, 2: the second).

obs = [fixation, stim1, stim2]: the fixation cue in every period but `decision`; channel 1 is 1
during `stim1`, channel 2 during `stim2`. No noise (neurogym's task has no `sigma`). Durations:
stim1 and stim2 uniform on [300, 600) ms and delay1 on [800, 1500) ms by default, floored to dt
(80 ms by default). trial = {duration1, duration2 (ms, as floored), ground_truth = 1 if
duration1 > duration2 else 2}: equal durations count as "the second". Neurogym's new_trial ignores
keyword arguments, so this port accepts none; fix the durations with
`new_trial(..., durations={"stim1": k1, "stim2": k2})` (steps) or timing. Correct action =
ground_truth in `decision`. Keyword arguments: dt, rewards, timing.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from collector.tasks.base import _F32, _I32, TrialTask


@dataclasses.dataclass(frozen=True)
class IntervalDiscrimination(TrialTask):
    name: ClassVar[str] = "IntervalDiscrimination-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stim1", "delay1", "stim2", "delay2", "decision")
    default_timing: ClassVar[dict] = {"fixation": 300, "stim1": ("uniform", (300, 600)),
                                      "delay1": ("uniform", (800, 1500)), "stim2": ("uniform", (300, 600)),
                                      "delay2": 500, "decision": 300}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    default_dt: ClassVar[float] = 80
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing")
    trial_keys: ClassVar[tuple[str, ...]] = ()
    n_trial_u: ClassVar[int] = 0
    obs_dim: ClassVar[int] = 3
    num_actions: ClassVar[int] = 3

    def sample_trial(self, u, params):
        return {}

    def observations(self, trial, params, steps):
        d1, d2 = steps[1], steps[3]
        trial = {"duration1": (d1 * params.dt).astype(_F32), "duration2": (d2 * params.dt).astype(_F32),
                 "ground_truth": jnp.where(d1 > d2, 1, 2).astype(_I32)}
        fix, s1, s2, off = ([1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0])
        #                                    fixation stim1 delay1 stim2 delay2 decision
        return trial, jnp.asarray([fix, s1, fix, s2, fix, off], _F32)
