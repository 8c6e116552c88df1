"""GoNogo-v0 (neurogym 2.3.1, envs/native/gonogo.py): the worked example of docs/porting.md.

A go or no-go cue is shown in `stimulus`; after a delay, the subject must act (action 1) in
`decision` on a go trial and keep fixating (action 0) on a no-go trial.

obs = [fixation, nogo, go]: the fixation cue in every period but `decision` (neurogym's `fixation`
period lasts 0 ms by default), the cue of the trial's type in `stimulus`. No noise (neurogym's task
has no `sigma`). trial = {ground_truth: 0 (no-go) or 1 (go)}; ground truth in `decision` =
ground_truth. Rewards: acting in `decision` ends the trial with `correct` on a go trial and `fail` on
a no-go trial; a go trial that times out (no action) gets `miss` (neurogym's r_tmax = miss *
ground_truth); acting in `fixation` costs `abort` (the trial goes on: neurogym's abort is False).

Performance as neurogym reports it: 1 only for a go trial answered in time. A correctly withheld
no-go trial times out and reports 0, because neurogym's step() zeroes `performance` right after
`_new_trial` set it to 1 - ground_truth (only the very first trial after reset keeps that value,
and this port's reset does not mimic neurogym's reset). So no policy gets more than 0.5.
Keyword arguments: dt, rewards, timing.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from collector.tasks.base import _I32, TrialTask, _pick


@dataclasses.dataclass(frozen=True)
class GoNogo(TrialTask):
    name: ClassVar[str] = "GoNogo-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus", "delay", "decision")
    default_timing: ClassVar[dict] = {"fixation": 0, "stimulus": 500, "delay": 500, "decision": 500}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": -0.5, "miss": -0.5}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth",)
    n_trial_u: ClassVar[int] = 1
    has_timeout_reward: ClassVar[bool] = True
    obs_dim: ClassVar[int] = 3
    num_actions: ClassVar[int] = 2

    def sample_trial(self, u, params):
        return {"ground_truth": _pick(u[0], jnp.asarray([0, 1], _I32))}

    def observations(self, trial, params, steps):
        go = trial["ground_truth"].astype(jnp.float32)
        cue = jnp.stack([jnp.float32(1), 1 - go, go])  # fixation on, the trial type's channel
        fix = jnp.asarray([1.0, 0.0, 0.0])
        #                fixation  stimulus  delay  decision
        return trial, jnp.stack([fix, cue, fix, jnp.zeros(3)])

    def timeout_reward(self, trial, params):
        return params.rewards["miss"] * trial["ground_truth"]
