"""AntiReach-v0 (neurogym 2.3.1, envs/native/antireach.py).

A stimulus is shown on a ring of `dim_ring` directions; after a delay the subject reaches to the
opposite direction (anti = True, the default) or to the stimulus itself (anti = False).

obs = [fixation, ring_1..ring_R]: the fixation cue in `fixation`, `stimulus` and `delay`; the ring
shows cos(theta - stim_theta) in `stimulus` only, with theta = neurogym's
np.arange(0, 2 pi, 2 pi / dim_ring) and stim_theta = (theta[ground_truth] + pi) mod 2 pi when anti,
else theta[ground_truth]. No noise (neurogym's task has no `sigma`). trial = {ground_truth in
0..R-1, anti in {0, 1}} (both may be forced; neurogym stores `anti` as a bool, the port as 0/1).
Correct action = ground_truth + 1 in `decision`; a non-zero action in `fixation` costs
rewards["abort"] (no abort: the trial goes on); actions in `stimulus` and `delay` are ignored.
Keyword arguments: dt, anti, rewards, timing, dim_ring. A dim_ring for which neurogym's arange has
dim_ring + 1 angles (61, 122, 197, ...: neurogym then fails at its first trial) is refused.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from collector.tasks.base import _F32, _I32, TrialTask, _pick


def _ring_table(dim_ring: int) -> np.ndarray:
    """float32[2, R, R]: the stimulus ring cos(theta - stim_theta) for (anti, ground_truth),
    computed in float64 exactly as neurogym does, then rounded to its float32 obs buffer."""
    theta = np.arange(0, 2 * np.pi, 2 * np.pi / dim_ring)
    pro = theta
    anti = np.mod(theta + np.pi, 2 * np.pi)
    return np.stack([np.cos(theta[None, :] - s[:, None]) for s in (pro, anti)]).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class AntiReach(TrialTask):
    dim_ring: int = 32

    name: ClassVar[str] = "AntiReach-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus", "delay", "decision")
    default_timing: ClassVar[dict] = {"fixation": 500, "stimulus": 500, "delay": 0, "decision": 500}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "anti", "rewards", "timing", "dim_ring")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "anti")
    n_trial_u: ClassVar[int] = 1

    @property
    def obs_dim(self) -> int:
        return 1 + self.dim_ring

    @property
    def num_actions(self) -> int:
        return 1 + self.dim_ring

    @classmethod
    def make(cls, **kw):
        dim_ring = kw.pop("dim_ring", 32)
        if isinstance(dim_ring, bool) or not isinstance(dim_ring, int | np.integer) or dim_ring < 1:
            raise ValueError(f"{cls.name}: dim_ring must be a positive int, got {dim_ring!r}")
        if len(np.arange(0, 2 * np.pi, 2 * np.pi / dim_ring)) != dim_ring:
            raise ValueError(f"{cls.name}: dim_ring={dim_ring} gives neurogym {dim_ring + 1} ring angles "
                             f"(np.arange rounding), and its trials fail")
        env = cls(dim_ring=int(dim_ring))
        anti = kw.pop("anti", True)
        if not isinstance(anti, bool | np.bool_ | int):
            raise ValueError(f"{cls.name}: anti must be a bool, got {anti!r}")
        extra = {"anti": np.int32(bool(anti)), "ring": _ring_table(env.dim_ring)}
        return env, env._make_params(extra=extra, **kw)

    def sample_trial(self, u, params):
        return {"ground_truth": _pick(u[0], jnp.arange(self.dim_ring, dtype=_I32)),
                "anti": params.extra["anti"].astype(_I32)}

    def observations(self, trial, params, steps):
        r = self.dim_ring
        ring = params.extra["ring"][(trial["anti"] != 0).astype(_I32), trial["ground_truth"]]  # [R]
        fix = jnp.concatenate([jnp.ones(1, _F32), jnp.zeros(r, _F32)])
        stim = jnp.concatenate([jnp.ones(1, _F32), ring])
        #                fixation stimulus delay  decision
        return trial, jnp.stack([fix, stim, fix, jnp.zeros(1 + r, _F32)]).astype(_F32)

    def gt_action(self, trial):
        return (trial["ground_truth"] + 1).astype(_I32)
