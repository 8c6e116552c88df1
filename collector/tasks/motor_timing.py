"""MotorTiming-v0 (neurogym 2.3.1, envs/native/readysetgo.py).

A cue tells which of two intervals (800 or 1500 ms) to produce; after the set signal the subject
presses (action 1) when that interval has elapsed.

Periods: fixation, cue, set, production (2 * production ms: floor(2 P / dt) steps). obs = [fixation,
interval_1, interval_2, set]: [1, 0, 0, 0] in `fixation`; channel 0 and the trial's interval
channel (1 + production_ind) in `cue`; the same plus channel 3 in `set` (50 ms by default: 0 steps
at dt = 80, so no set cue is ever shown at the defaults); zeros in `production`. No noise (neurogym's
task has no `sigma`). trial = {production_ind in {0, 1} (may be forced), production = [800,
1500][production_ind] ms}. Ground truth: 1 at production step floor(production / dt), else 0.

Rules: neurogym's shared timing rule (ready_set_go.production_step): a non-zero action in `fixation`
costs rewards["abort"] (the trial goes on); the first press in `production` ends the trial, correct
when |t_prod - production| <= prod_margin * production + 25 ms, t_prod = the time from the end of
set to the press; no press: timeout at the end of production. The gt-following policy presses at
floor(P / dt) dt: exactly on time for 800 ms, 60 ms early for 1500 ms at dt = 80 (both correct).

Keyword arguments: dt (80), rewards, timing (fixation, cue, set; neurogym's cue is
`lambda: rng.uniform(1000, 3000)`, here ("uniform", (1000, 3000)); neurogym ignores
timing["production"], the port refuses it), prod_margin.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import _F32, _I32, _is_number, _pick, _take, period_index
from collector.tasks.ready_set_go import ProductionTask, check_margin, production_step, refuse_ignored_timing

_INTERVALS = (800, 1500)  # neurogym's self.intervals (ms)


@dataclasses.dataclass(frozen=True)
class MotorTiming(ProductionTask):
    name: ClassVar[str] = "MotorTiming-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "cue", "set", "production")
    default_timing: ClassVar[dict] = {"fixation": 500, "cue": ("uniform", (1000, 3000)), "set": 50,
                                      "production": 0}  # production: a placeholder, the trial sets it
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    default_dt: ClassVar[float] = 80
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "prod_margin")
    trial_keys: ClassVar[tuple[str, ...]] = ("production_ind",)
    n_trial_u: ClassVar[int] = 1
    abort_period: ClassVar[str | None] = "fixation"
    decision_period: ClassVar[str | None] = "production"
    obs_dim: ClassVar[int] = 4
    num_actions: ClassVar[int] = 2

    def params_extra(self, kw):
        margin = check_margin(self.name, kw)
        refuse_ignored_timing(self.name, kw, ("production",))
        dt = kw.get("dt", self.default_dt)
        dt = float(dt) if _is_number(dt) and dt > 0 else 1.0  # a bad dt is reported by the base
        # production period and gt offset in steps, as neurogym's int(2 P / dt) and int(P / dt)
        return {"prod_margin": margin, "intervals": np.asarray(_INTERVALS, np.float32),
                "prod_steps": np.asarray([int(2 * p / dt) for p in _INTERVALS], np.int32),
                "gt_steps": np.asarray([int(p / dt) for p in _INTERVALS], np.int32)}

    def sample_trial(self, u, params):
        return {"production_ind": _pick(u[0], jnp.asarray([0, 1], _I32))}

    def observations(self, trial, params, steps):
        i = trial["production_ind"]
        trial = {**trial, "production": _take(params.extra["intervals"], i),
                 "prod_steps": _take(params.extra["prod_steps"], i), "gt_step": _take(params.extra["gt_steps"], i)}
        which = (jnp.arange(2) == i).astype(_F32)
        one, zero = jnp.ones(1, _F32), jnp.zeros(1, _F32)
        cue = jnp.concatenate([one, which, zero])
        #                   fixation                                  cue  set                                 production
        return trial, jnp.stack([jnp.asarray([1.0, 0, 0, 0], _F32), cue, jnp.concatenate([one, which, one]),
                                 jnp.zeros(4, _F32)])

    def step(self, key, state, action, params):
        p = period_index(state)
        t_prod = (state.t - state.ends[2]).astype(_F32) * params.dt  # from the end of set
        return production_step(self, key, state, action, params, p == 0, p == 3, t_prod,
                               state.trial["production"])
