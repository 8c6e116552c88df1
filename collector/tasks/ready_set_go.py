"""ReadySetGo-v0 (neurogym 2.3.1, envs/native/readysetgo.py), and the timing-production rule that
neurogym's MotorTiming-v0 and OneTwoThreeGo-v0 share with it (`production_step`).

A "ready" flash, then after a random interval (`measure`) a "set" flash; the subject presses (action
1) after the set cue so as to reproduce the measured interval multiplied by `gain`.

Periods (neurogym's layout): fixation [0, F), ready [F, F + R), measure [F, F + M) (it starts with
the ready cue, not after it), set [F + M, F + M + S), production [F + M + S, + floor(2 M gain)).
The port's periods are fixation, measure, set, production; the ready cue is an overlay on the first
R steps of `measure`. obs = [fixation, ready, set]: channel 0 is 1 everywhere but in `production`,
channel 1 during ready, channel 2 during set. No noise (neurogym's task has no `sigma`).
trial = {measure (ms, = M dt), gain, production = measure * gain (ms)}; `gain` may be forced (an
int, as for the constructor: the port computes the production's steps as floor(2 M gain), which
is neurogym's int((start + 2 measure gain) / dt) - start_ind for integer gains and integer dt).
Ground truth: 1 at production step floor(production / dt), else 0.

Rules (neurogym's _step): a non-zero action in `fixation` costs rewards["abort"] (no abort: the trial
goes on); the first press (action 1) in `production` ends the trial; with t_prod = the time from the
END OF MEASURE (= the start of set) to the press and eps = |t_prod - production|, the press is
correct (performance 1) when eps <= prod_margin * production + 25 ms, with reward
max((1 - eps / threshold)^1.5, 0.1) * rewards["correct"], else rewards["fail"]. A trial without a
press times out at the end of production (performance 0, no extra reward).

Neurogym quirks reproduced: t_prod counts from the start of set, so the ground-truth press time
(set end + production) is one step late, eps = dt for the gt-following policy (still correct at
the defaults: threshold >= 185 ms > 80 ms); new_trial(measure=...) only relabels neurogym's trial
dict (the periods and the production use the sampled measure), so the port does not accept it: fix
the measure's duration instead (`durations={"measure": steps}` or timing).

Keyword arguments: dt (80), rewards, timing (fixation, ready: a number of ms, at most the shortest
measure; measure; set: neurogym's specs; neurogym ignores timing["production"], the port refuses
it), gain (a positive int, neurogym's documented type), prod_margin.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import (
    _F32,
    _I32,
    EnvState,
    TrialTask,
    _is_number,
    _steps,
    _uniforms_and_normals,
    period_index,
)


def check_margin(task: str, kw: dict) -> np.float32:
    """Pop and validate neurogym's `prod_margin` (default 0.2)."""
    margin = kw.pop("prod_margin", 0.2)
    if not _is_number(margin) or margin < 0:
        raise ValueError(f"{task}: prod_margin must be a number >= 0, got {margin!r}")
    return np.float32(margin)


def refuse_ignored_timing(task: str, kw: dict, periods) -> None:
    """Neurogym sets these periods' durations from the trial and silently ignores timing for them."""
    for p in periods:
        if p in (kw.get("timing") or {}):
            raise ValueError(f"{task}: timing[{p!r}] is not supported (neurogym ignores it: the "
                             f"trial sets that period's duration)")


def production_step(env: TrialTask, key, state: EnvState, action, params, in_abort, in_prod, t_prod, target):
    """The shared step of the three timing tasks (neurogym's readysetgo.py): a non-zero action where
    in_abort costs rewards["abort"]; action 1 where in_prod ends the trial, correct when
    eps = |t_prod - target| <= prod_margin * target + 25 (ms), rewarded max((1 - eps / thr)^1.5,
    0.1) * rewards["correct"], else rewards["fail"]; the trial times out at its last step."""
    u, z = _uniforms_and_normals(key, env._n_u, env.noise_dim)
    action = jnp.asarray(action, _I32)
    gt = env.gt_now(state, params)
    press = in_prod & (action == 1)
    eps = jnp.abs(t_prod - target)
    thr = params.extra["prod_margin"] * target + 25.0
    hit = press & (eps <= thr)
    score = jnp.maximum(jnp.maximum(1.0 - eps / thr, 0.0) ** 1.5, 0.1) * params.rewards["correct"]
    reward = jnp.where(in_abort & (action != 0), params.rewards["abort"], 0.0)
    reward = jnp.where(press, jnp.where(hit, score, params.rewards["fail"]), reward).astype(_F32)
    timeout = state.t + 1 >= state.ends[-1]
    return env._advance(u, z, state, params, press | timeout, reward, gt, hit)


class ProductionTask(TrialTask):
    """A timing task whose last period, `production`, lasts a number of steps the trial sets
    (trial["prod_steps"], derived in `observations`) and whose ground truth is a press at
    production step trial["gt_step"]."""

    def _sample_trial(self, u, params, num_tr, forced=None, durations=None) -> EnvState:
        state = super()._sample_trial(u, params, num_tr, forced, durations)
        if durations is not None and "production" in durations:
            return state
        # the base laid production out with its placeholder timing (0 steps): set its real length
        return state.replace(ends=state.ends.at[-1].set(state.ends[-2] + state.trial["prod_steps"]))

    def gt_now(self, state, params=None):
        return (state.t == state.ends[-2] + state.trial["gt_step"]).astype(_I32)

    def shortest_trial(self, params) -> int:
        """A press at the first production step ends a trial."""
        return max(1, sum(int(pt.min_steps) for pt in params.timing[:-1]) + 1)


@dataclasses.dataclass(frozen=True)
class ReadySetGo(ProductionTask):
    name: ClassVar[str] = "ReadySetGo-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "measure", "set", "production")
    # neurogym's measure is `lambda: rng.uniform(800, 1500)`; production's 0 is a placeholder
    default_timing: ClassVar[dict] = {"fixation": 100, "measure": ("uniform", (800, 1500)), "set": 83,
                                      "production": 0}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    default_dt: ClassVar[float] = 80
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "gain", "prod_margin")
    trial_keys: ClassVar[tuple[str, ...]] = ("gain",)
    n_trial_u: ClassVar[int] = 0
    abort_period: ClassVar[str | None] = "fixation"
    decision_period: ClassVar[str | None] = "production"
    obs_dim: ClassVar[int] = 3
    num_actions: ClassVar[int] = 2

    def params_extra(self, kw):
        gain = kw.pop("gain", 1)
        if isinstance(gain, bool) or not isinstance(gain, numbers.Integral) or gain < 1:
            raise ValueError(f"{self.name}: gain must be a positive int, got {gain!r}")
        margin = check_margin(self.name, kw)
        refuse_ignored_timing(self.name, kw, ("production",))
        timing = dict(kw.get("timing") or {})
        ready = timing.pop("ready", 83)
        if not _is_number(ready) or ready < 0:
            raise ValueError(f"{self.name}: timing['ready'] must be a number of ms, got {ready!r}")
        kw["timing"] = timing
        dt = kw.get("dt", self.default_dt)
        ready_steps = _steps(float(ready), float(dt)) if _is_number(dt) and dt > 0 else 0
        return {"gain": np.float32(gain), "prod_margin": margin, "ready_steps": np.int32(ready_steps)}

    @classmethod
    def make(cls, **kw):
        env = cls()
        extra = env.params_extra(kw)
        params = env._make_params(extra=extra, **kw)
        shortest = int(params.timing[1].min_steps)
        if int(extra["ready_steps"]) > shortest:
            raise ValueError(f"{cls.name}: timing['ready'] lasts {int(extra['ready_steps'])} steps, more "
                             f"than the shortest measure ({shortest} steps): not supported")
        return env, params

    def sample_trial(self, u, params):
        return {"gain": params.extra["gain"]}

    def forced_value(self, key, value, like):
        return jnp.asarray(value, _F32)

    def observations(self, trial, params, steps):
        m_steps = steps[1]
        measure = m_steps.astype(_F32) * params.dt
        production = measure * trial["gain"]
        m_gain = m_steps.astype(_F32) * trial["gain"]  # production / dt, without the ms round trip
        trial = {**trial, "measure": measure, "production": production,
                 "prod_steps": jnp.floor(2 * m_gain).astype(_I32), "gt_step": jnp.floor(m_gain).astype(_I32)}
        fix, setc = [1.0, 0.0, 0.0], [1.0, 0.0, 1.0]
        #                                fixation measure set  production
        return trial, jnp.asarray([fix, fix, setc, [0.0, 0.0, 0.0]], _F32)

    def _obs(self, p, state, noise):
        clean = super()._obs(p, state, noise)
        # the ready cue: the first ready_steps steps of measure (neurogym's overlapping `ready` period)
        start = state.ends[0]
        ready = (state.t >= start) & (state.t < start + state.trial["ready_steps"])
        return clean.at[1].set(jnp.where(ready, 1.0, clean[1]))

    def _complete_trial(self, trial, params, steps):
        trial, stim = super()._complete_trial(trial, params, steps)
        return {**trial, "ready_steps": params.extra["ready_steps"]}, stim

    def step(self, key, state, action, params):
        p = period_index(state)
        t_prod = (state.t - state.ends[1]).astype(_F32) * params.dt  # from the end of measure (quirk)
        return production_step(self, key, state, action, params, p == 0, p == 3, t_prod,
                               state.trial["production"])
