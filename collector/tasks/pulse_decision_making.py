"""PulseDecisionMaking-v0 (neurogym 2.3.1, envs/native/perceptualdecisionmaking.py).

Two channels flash pulses in n_bin short cue windows; one channel pulses with probability p_pulse[0]
per window, the other with p_pulse[1] (which one is random); the subject reports in `decision` the
channel that pulsed more often.

Periods: fixation, then cue0, bin0, ..., cue<n-1>, bin<n-1>, then decision (dt = 10 ms: 50 + 6 *
(1 + 24) + 50 = 250 steps at the defaults). obs = [fixation, pulse1, pulse2]: the fixation cue in
every period but `decision` (neurogym adds it to the whole trial, then clears `decision`);
cue<i> shows pulse1[i] and pulse2[i]. No noise (neurogym's task has no `sigma`). trial = {pulse1,
pulse2: float32[n_bin] of 0/1, tie: neurogym's rng.uniform(-0.1, 0.1) draw, ground_truth =
int(sum(pulse1) < sum(pulse2) + tie)} (the tie draw decides equal counts at random). Correct action
= ground_truth + 1. Forcing pulse1 / pulse2 / tie is a port extension: neurogym's new_trial records
forced values in the trial dict but builds the trial from its own draws.

Rules (hence the `step` override: the abort region is every period before `decision`, not one
period): a non-zero action before `decision` costs `abort` (the trial goes on: neurogym's abort is
False); in `decision` the first non-zero action ends the trial with `correct` (performance 1) if it
is the ground truth, else `fail`. A trial without a response ends after `decision` with reward 0.
Keyword arguments: dt, rewards, timing, p_pulse (two probabilities), n_bin (each value of n_bin is
its own class, with its own periods).
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import ClassVar

import jax.numpy as jnp

from collector.tasks.base import (_F32, _I32, EnvParams, EnvState, TrialTask, _uniforms_and_normals,
                                  check_numbers, period_index)


def _periods(n_bin: int) -> tuple[str, ...]:
    return ("fixation", *[f"{k}{i}" for i in range(n_bin) for k in ("cue", "bin")], "decision")


def _timing(n_bin: int) -> dict:
    timing = {"fixation": 500, "decision": 500}
    for i in range(n_bin):
        timing[f"cue{i}"], timing[f"bin{i}"] = 10, 240
    return timing


@dataclasses.dataclass(frozen=True)
class PulseDecisionMaking(TrialTask):
    name: ClassVar[str] = "PulseDecisionMaking-v0"
    n_bin: ClassVar[int] = 6
    periods: ClassVar[tuple[str, ...]] = _periods(6)
    default_timing: ClassVar[dict] = _timing(6)
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    default_dt: ClassVar[float] = 10
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "p_pulse", "n_bin")
    trial_keys: ClassVar[tuple[str, ...]] = ("pulse1", "pulse2", "tie")
    abort_period: ClassVar[str | None] = None  # `step` below states the rules
    obs_dim: ClassVar[int] = 3
    num_actions: ClassVar[int] = 3

    @property
    def n_trial_u(self) -> int:
        return 2 + 2 * self.n_bin  # swap, the two pulse trains, tie

    @classmethod
    def make(cls, **kw):
        n_bin = kw.pop("n_bin", 6)
        if not isinstance(n_bin, numbers.Integral) or isinstance(n_bin, bool) or n_bin < 1:
            raise ValueError(f"{cls.name}: n_bin must be a positive int, got {n_bin!r}")
        env = _with_bins(cls, int(n_bin))()
        p_pulse = check_numbers(cls.name, "p_pulse", kw.pop("p_pulse", (0.3, 0.7)))
        if len(p_pulse) != 2:
            raise ValueError(f"{cls.name}: p_pulse must be two probabilities, got {p_pulse!r}")
        return env, env._make_params(extra={"p_pulse": jnp.asarray(p_pulse, _F32)}, **kw)

    def sample_trial(self, u, params):
        """pulse1, pulse2 float32[n_bin] (1 where a pulse), tie float32 in [-0.1, 0.1)."""
        n = self.n_bin
        p = params.extra["p_pulse"]
        swap = u[0] < 0.5
        p1, p2 = jnp.where(swap, p[1], p[0]), jnp.where(swap, p[0], p[1])
        return {"pulse1": (u[1:1 + n] < p1).astype(_F32), "pulse2": (u[1 + n:1 + 2 * n] < p2).astype(_F32),
                "tie": (u[1 + 2 * n] * 0.2 - 0.1).astype(_F32)}

    def observations(self, trial, params, steps):
        p1, p2 = trial["pulse1"].astype(_F32), trial["pulse2"].astype(_F32)
        gt = (jnp.sum(p1) < jnp.sum(p2) + trial["tie"]).astype(_I32)
        trial = {**trial, "ground_truth": gt}
        fix = jnp.asarray([1.0, 0.0, 0.0], _F32)
        cues = jnp.stack([jnp.ones_like(p1), p1, p2], axis=1)  # [n_bin, 3]
        rows = [fix]
        for i in range(self.n_bin):
            rows += [cues[i], fix]
        rows.append(jnp.zeros(3, _F32))
        return trial, jnp.stack(rows)

    def gt_action(self, trial):
        return trial["ground_truth"].astype(_I32) + 1

    def step(self, key, state: EnvState, action, params: EnvParams):
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        action = jnp.asarray(action, _I32)
        in_dec = period_index(state) == len(self.periods) - 1
        gt = self.gt_now(state, params)
        moved = action != 0
        correct = in_dec & moved & (action == gt)
        reward = jnp.where(in_dec & moved, jnp.where(correct, params.rewards["correct"], params.rewards["fail"]),
                           jnp.where(moved, params.rewards["abort"], 0.0)).astype(_F32)
        ended = (in_dec & moved) | (~in_dec & moved & params.abort)
        timeout = state.t + 1 >= state.ends[-1]
        return self._advance(u, z, state, params, ended | timeout, reward, gt, correct)


@functools.lru_cache(maxsize=None)
def _with_bins(cls, n_bin: int):
    """The task class for n_bin windows (its periods and default timing depend on n_bin); one class
    per n_bin, so equal options give equal (hashable, jit-cacheable) envs."""
    if n_bin == cls.n_bin:
        return cls
    return dataclasses.dataclass(frozen=True)(type(cls.__name__, (cls,), {
        "__module__": cls.__module__, "__qualname__": cls.__qualname__, "n_bin": n_bin,
        "periods": _periods(n_bin), "default_timing": _timing(n_bin)}))
