"""OneTwoThreeGo-v0 (neurogym 2.3.1, envs/native/readysetgo.py).

Three flashes separated by the same interval; the subject presses (action 1) one more interval after
the third flash.

Periods: fixation, target, s1, interval1, s2, interval2, s3, interval3, response. interval1 is drawn
from timing["interval1"] (600..1000 ms by default, floored to dt); interval2 and interval3 last as
long as interval1 (neurogym ignores their timing; the port refuses it). obs = [fixation, stimulus,
target]: channel 0 is 1 throughout, channel 1 in s1, s2 and s3, channel 2 everywhere but in
`fixation`. No noise (neurogym's task has no `sigma`). Ground truth: 1 in `response`, else 0.

Rules (neurogym's _step): in interval3 or response, a press ends the trial, correct when
|t_prod - interval| <= prod_margin * interval + 25 ms (t_prod: the time from the end of s3), rewarded
max((1 - eps / threshold)^1.5, 0.1) * rewards["correct"], else rewards["fail"] (the shared rule,
ready_set_go.production_step); in every other period a non-zero action costs rewards["abort"] (the
trial goes on); no press: timeout at the end of response (performance 0). The gt-following policy
presses at the first response step, exactly one interval after s3.

trial = {interval (ms)}. Neurogym quirk reproduced: new_trial(interval=...) changes only the
trial's interval that the reward compares with, not the periods (they use the sampled interval);
the port's forced `interval` does the same, and otherwise interval = interval1's steps * dt.
Keyword arguments: dt (80), rewards, timing, prod_margin.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from collector.tasks.base import _F32, _I32, EnvState, TrialTask, period_index
from collector.tasks.ready_set_go import check_margin, production_step, refuse_ignored_timing

_IV1, _IV2, _S3, _IV3 = 3, 5, 6, 7  # indices of interval1, interval2, s3, interval3 in `periods`


@dataclasses.dataclass(frozen=True)
class OneTwoThreeGo(TrialTask):
    name: ClassVar[str] = "OneTwoThreeGo-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "target", "s1", "interval1", "s2", "interval2", "s3",
                                          "interval3", "response")
    default_timing: ClassVar[dict] = {
        "fixation": ("truncated_exponential", (400, 100, 800)),  # neurogym: TruncExp(400, 100, 800)
        "target": ("truncated_exponential", (1000, 500, 1500)),
        "s1": 100, "interval1": [600, 700, 800, 900, 1000], "s2": 100,
        "interval2": 0, "s3": 100, "interval3": 0,  # placeholders: both last as long as interval1
        "response": 1000}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    default_dt: ClassVar[float] = 80
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "prod_margin")
    trial_keys: ClassVar[tuple[str, ...]] = ("interval",)
    n_trial_u: ClassVar[int] = 0
    abort_period: ClassVar[str | None] = None  # (every period but interval3 and response: see step)
    decision_period: ClassVar[str | None] = "response"  # where the ground truth is 1
    obs_dim: ClassVar[int] = 3
    num_actions: ClassVar[int] = 2

    def params_extra(self, kw):
        margin = check_margin(self.name, kw)
        refuse_ignored_timing(self.name, kw, ("interval2", "interval3"))
        return {"prod_margin": margin}

    def sample_trial(self, u, params):
        return {"interval": jnp.asarray(-1.0, _F32)}  # < 0: not forced, set from interval1's duration

    def forced_value(self, key, value, like):
        return jnp.asarray(value, _F32)

    def gt_action(self, trial):
        return jnp.asarray(1, _I32)

    def _sample_trial(self, u, params, num_tr, forced=None, durations=None) -> EnvState:
        state = super()._sample_trial(u, params, num_tr, forced, durations)
        steps = jnp.diff(state.ends, prepend=0)
        for i in (_IV2, _IV3):  # neurogym: add_period(..., duration=interval)
            if durations is None or self.periods[i] not in durations:
                steps = steps.at[i].set(steps[_IV1])
        return state.replace(ends=jnp.cumsum(steps).astype(_I32))

    def observations(self, trial, params, steps):
        sampled = steps[_IV1].astype(_F32) * params.dt
        trial = {**trial, "interval": jnp.where(trial["interval"] < 0, sampled, trial["interval"])}
        fix, tgt, flash = [1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]
        #                        fixation target s1 interval1 s2 interval2 s3 interval3 response
        return trial, jnp.asarray([fix, tgt, flash, tgt, flash, tgt, flash, tgt, tgt], _F32)

    def shortest_trial(self, params) -> int:
        """A press at the first step of interval3 ends a trial (interval2 lasts as long as interval1)."""
        mins = [int(pt.min_steps) for pt in params.timing]
        mins[_IV2] = mins[_IV1]
        return max(1, sum(mins[:_IV3]) + 1)

    def step(self, key, state, action, params):
        p = period_index(state)
        in_prod = p >= _IV3  # interval3 or response
        t_prod = (state.t - state.ends[_S3]).astype(_F32) * params.dt  # from the end of s3
        return production_step(self, key, state, action, params, ~in_prod, in_prod, t_prod,
                               state.trial["interval"])
