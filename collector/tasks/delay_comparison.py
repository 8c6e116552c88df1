"""DelayComparison-v0 (neurogym 2.3.1, envs/native/delaycomparison.py).

Two scalar stimuli separated by a delay; the subject reports in `decision` which one was larger
(action 1: the first, 2: the second).

obs = [fixation, stimulus]: the fixation cue in every period but `decision`; the stimulus channel
shows represent(v1) in `stimulus1` and represent(v2) in `stimulus2`, represent(v) =
(1 + (v - vmin) / (vmax - vmin)) / 2 over all values of `vpairs`. Input noise (sigma / sqrt(dt))
on BOTH channels, fixation cue included, in `stimulus1` and `stimulus2` (neurogym's add_randn
without `where`). trial = {ground_truth in {1, 2}, vpair (one of vpairs), v1, v2}: v1, v2 = vpair
when ground_truth is 1, swapped when 2 (so the larger value comes first on ground_truth 1, for
vpairs ordered larger-first as neurogym's defaults). Correct action = ground_truth in `decision`.
Keyword arguments: dt, vpairs, rewards, timing, sigma.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import _F32, _I32, TrialTask, _pick, _take, check_numbers


@dataclasses.dataclass(frozen=True)
class DelayComparison(TrialTask):
    name: ClassVar[str] = "DelayComparison-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus1", "delay", "stimulus2", "decision")
    default_timing: ClassVar[dict] = {"fixation": 500, "stimulus1": 500, "delay": 1000, "stimulus2": 500,
                                      "decision": 100}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "vpairs", "rewards", "timing", "sigma")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "vpair")
    n_trial_u: ClassVar[int] = 2
    noise: ClassVar[dict] = {"stimulus1": "all", "stimulus2": "all"}
    obs_dim: ClassVar[int] = 2
    num_actions: ClassVar[int] = 3

    def params_extra(self, kw):
        vpairs = kw.pop("vpairs", None)
        if vpairs is None:  # neurogym: `if vpairs is None`
            vpairs = [(18, 10), (22, 14), (26, 18), (30, 22), (34, 26)]
        vpairs = np.asarray(check_numbers(self.name, "vpairs", vpairs, nested=True), np.float32)
        if vpairs.shape[1] != 2:
            raise ValueError(f"{self.name}: vpairs must be pairs (v1, v2), got {vpairs.tolist()!r}")
        lo, hi = float(vpairs.min()), float(vpairs.max())
        if hi <= lo:
            raise ValueError(f"{self.name}: vpairs need two different values (neurogym divides by max - min)")
        return {"vpairs": vpairs, "vmin": np.float32(lo), "vmax": np.float32(hi)}

    def sample_trial(self, u, params):
        pairs = params.extra["vpairs"]
        i = _pick(u[1], jnp.arange(pairs.shape[0], dtype=_I32))
        return {"ground_truth": _pick(u[0], jnp.asarray([1, 2], _I32)),
                "vpair": jnp.stack([_take(pairs[:, 0], i), _take(pairs[:, 1], i)])}

    def observations(self, trial, params, steps):
        a, b = trial["vpair"][0], trial["vpair"][1]
        swap = trial["ground_truth"] == 2
        v1, v2 = jnp.where(swap, b, a), jnp.where(swap, a, b)
        trial = {**trial, "v1": v1, "v2": v2}
        lo, hi = params.extra["vmin"], params.extra["vmax"]

        def represent(v):
            return (1 + (v - lo) / (hi - lo)) / 2

        one, zero = jnp.float32(1), jnp.float32(0)
        table = jnp.stack([jnp.stack([one, zero]), jnp.stack([one, represent(v1)]), jnp.stack([one, zero]),
                           jnp.stack([one, represent(v2)]), jnp.stack([zero, zero])])
        return trial, table.astype(_F32)
