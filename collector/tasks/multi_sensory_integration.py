"""MultiSensoryIntegration-v0 (neurogym 2.3.1, envs/native/multisensory.py).

The same direction is shown in two modalities, each with part of the trial's coherence; the subject
reports the direction in `decision` (one step at the defaults).

obs = [fixation, mod1_1..mod1_R, mod2_1..mod2_R]: the fixation cue in `fixation` and `stimulus`
(neurogym adds it to the whole trial, then clears `decision`); in `stimulus` modality 1 shows
cos(theta - theta_gt) * coh * coh_prop / 200 + 0.5 and modality 2 the same with coh * (1 - coh_prop),
and noise (sigma / sqrt(dt)) is added to every channel, the fixation cue included (neurogym's
add_randn without `where`). trial = {ground_truth in 0..R-1, coh in {5, 15, 50}, coh_prop in [0, 1)}.
Correct action = ground_truth + 1 in `decision`; the first non-zero action there ends the trial
(reward `correct` if right, else 0: neurogym's task has no `fail` reward); acting in `fixation`
costs `abort` (the trial goes on). Keyword arguments: dt, rewards, timing, sigma, dim_ring.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from collector.tasks.base import _F32, _I32, TrialTask, _pick, _take, check_dim_ring


@dataclasses.dataclass(frozen=True)
class MultiSensoryIntegration(TrialTask):
    dim_ring: int = 2

    name: ClassVar[str] = "MultiSensoryIntegration-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus", "decision")
    default_timing: ClassVar[dict] = {"fixation": 300, "stimulus": 750, "decision": 100}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "sigma", "dim_ring")
    trial_keys: ClassVar[tuple[str, ...]] = ("ground_truth", "coh", "coh_prop")
    n_trial_u: ClassVar[int] = 3
    noise: ClassVar[dict] = {"stimulus": "all"}

    @property
    def num_actions(self) -> int:
        return 1 + self.dim_ring

    @property
    def obs_dim(self) -> int:
        return 1 + 2 * self.dim_ring

    @classmethod
    def make(cls, **kw):
        env = cls(dim_ring=check_dim_ring(cls.name, kw))
        return env, env._make_params(cohs=[5, 15, 50], **kw)  # neurogym's fixed coherences

    def sample_trial(self, u, params):
        return {"ground_truth": _pick(u[0], jnp.arange(self.dim_ring, dtype=_I32)),
                "coh": _pick(u[1], params.cohs), "coh_prop": u[2]}

    def gt_action(self, trial):
        return trial["ground_truth"].astype(_I32) + 1

    def observations(self, trial, params, steps):
        theta = jnp.asarray(self._theta(), _F32)
        tuning = jnp.cos(theta - _take(theta, trial["ground_truth"]))
        coh, prop = trial["coh"].astype(_F32), trial["coh_prop"].astype(_F32)
        one = jnp.ones(1, _F32)
        stim = jnp.concatenate([one, tuning * (coh * prop / 200) + 0.5, tuning * (coh * (1 - prop) / 200) + 0.5])
        fix = jnp.concatenate([one, jnp.zeros(2 * self.dim_ring, _F32)])
        #                fixation stimulus decision
        return trial, jnp.stack([fix, stim, jnp.zeros_like(fix)])
