"""ToneDetection-v0 (neurogym 2.3.1, envs/native/tonedetection.py).

A 50 ms tone may be embedded in noise at 500, 1000 or 1500 ms of a 2000 ms stimulus; the subject
reports whether there was one and where (the human-task version: no fixation period, no response
rule).

obs = [stimulus]: 1 during the tone (steps int(toneTiming[c-1] / dt) to that + int(toneDur / dt))
on condition c in 1..3, else 0, plus noise (sigma / sqrt(dt); sigma 0.2, dt 50 by default) on
every step. One period, `stimulus`. trial = {ground_truth = condition in 0..3 (0: no tone)};
new_trial accepts neurogym's `condition`. Ground truth = the condition on every step. Neurogym's
task has no reward rule: every step gives reward 0, the trial ends when its last step passes, and
performance is always 0 (the project's performance-based evaluation does not apply to it).
Keyword arguments: dt, sigma, timing (keys stimulus: a number of ms, toneTiming: three onsets in
ms, toneDur: ms, at least dt).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import _F32, _I32, TrialTask, _is_number, _pick, _take


@dataclasses.dataclass(frozen=True)
class ToneDetection(TrialTask):
    name: ClassVar[str] = "ToneDetection-v0"
    periods: ClassVar[tuple[str, ...]] = ("stimulus",)
    default_timing: ClassVar[dict] = {"stimulus": 2000}
    default_rewards: ClassVar[dict] = {}
    default_dt: ClassVar[float] = 50
    default_sigma: ClassVar[float] = 0.2
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "sigma", "timing")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "condition")
    n_trial_u: ClassVar[int] = 1
    abort_period: ClassVar[str | None] = None
    decision_period: ClassVar[str | None] = None
    noise: ClassVar[dict] = {"stimulus": "all"}
    obs_dim: ClassVar[int] = 1
    num_actions: ClassVar[int] = 4

    def params_extra(self, kw):
        timing = dict(kw.get("timing") or {})
        dt = kw.get("dt", self.default_dt)
        onsets = timing.pop("toneTiming", [500, 1000, 1500])
        dur = timing.pop("toneDur", 50)
        stim = timing.get("stimulus", self.default_timing["stimulus"])
        if not _is_number(stim):  # neurogym sizes its stimulus array with int(stimulus / dt)
            raise ValueError(f"{self.name}: timing['stimulus'] must be a number of ms, got {stim!r}")
        if not (isinstance(onsets, list | tuple) and len(onsets) >= 3 and all(_is_number(x) for x in onsets)):
            raise ValueError(f"{self.name}: timing['toneTiming'] must be three onsets in ms, got {onsets!r}")
        if not _is_number(dur):
            raise ValueError(f"{self.name}: timing['toneDur'] must be a number of ms, got {dur!r}")
        if _is_number(dt) and dt > dur:
            raise ValueError(f"{self.name}: dt={dt} must be smaller or equal to the tone duration {dur}")
        kw["timing"] = timing
        dt = float(dt) if _is_number(dt) else 1.0  # a bad dt is reported by the base
        return {"tone_start": np.asarray([int(x / dt) for x in onsets[:3]], np.int32),
                "tone_steps": np.int32(int(dur / dt))}

    def new_trial(self, key, params, durations=None, num_tr=1, **forced):
        if "condition" in forced:  # neurogym's name for it
            forced["ground_truth"] = forced.pop("condition")
        return super().new_trial(key, params, durations=durations, num_tr=num_tr, **forced)

    def sample_trial(self, u, params):
        return {"ground_truth": _pick(u[0], jnp.asarray([0, 1, 2, 3], _I32))}

    def _complete_trial(self, trial, params, steps):
        # state.stim = [first, end) steps of this trial's tone (empty on condition 0)
        c = trial["ground_truth"]
        start = _take(params.extra["tone_start"], jnp.maximum(c - 1, 0))
        end = jnp.where(c > 0, start + params.extra["tone_steps"], start)
        return trial, jnp.stack([start, end]).astype(_F32)

    def _obs(self, p, state, noise):
        t = state.t.astype(_F32)
        tone = ((t >= state.stim[0]) & (t < state.stim[1])).astype(_F32)
        return (tone[None] + noise).astype(_F32)

    def gt_now(self, state, params=None):
        return state.trial["ground_truth"].astype(_I32)  # neurogym: set_groundtruth on the whole trial
