"""DelayPairedAssociation-v0 (neurogym 2.3.1, envs/native/delaypairedassociation.py).

Two stimuli are shown one after the other, separated by a delay; on half of the four possible pairs
the subject must act (go, action 1) in `decision`, on the other half keep fixating (no-go).

obs = [fixation, stim_1..stim_4]: the fixation cue in every period but `decision` (neurogym adds it
to the whole trial, then clears `decision`; its `fixation` period lasts 0 ms by default), channel
pair[0] in `stim1`, channel pair[1] in `stim2`. No noise: neurogym's constructor takes `sigma` but
never adds noise, so the port accepts `sigma` and ignores it too. trial = {pair: int32[2], one of
(1, 3), (1, 4), (2, 3), (2, 4), ground_truth = 1 (go) when pair[1] - pair[0] is even, else 0}.
Forcing `pair` alone keeps the ground truth of the pair that was sampled (neurogym computes it
before applying the forced values); the port does the same. Ground truth in `decision` =
ground_truth. Rewards: acting in `decision` ends the trial with `correct` on a go trial and `fail`
on a no-go trial; a go trial that times out gets `miss` (r_tmax = miss * ground_truth); acting in
`fixation` costs `abort` (the trial goes on: neurogym's abort is False).

Performance as neurogym reports it (quirk kept): 1 only for a go trial answered in time. A
correctly withheld no-go trial times out and reports 0, because neurogym's step() zeroes
`performance` right after `_new_trial` set it to 1 - ground_truth. So no policy gets more than 0.5.
Keyword arguments: dt, rewards, timing, sigma (no effect, as in neurogym).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from collector.tasks.base import _F32, _I32, TrialTask, _pick

_PAIRS = ((1, 3), (1, 4), (2, 3), (2, 4))


@dataclasses.dataclass(frozen=True)
class DelayPairedAssociation(TrialTask):
    name: ClassVar[str] = "DelayPairedAssociation-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stim1", "delay_btw_stim", "stim2", "delay_aft_stim",
                                          "decision")
    default_timing: ClassVar[dict] = {"fixation": 0, "stim1": 1000, "delay_btw_stim": 1000, "stim2": 1000,
                                      "delay_aft_stim": 1000, "decision": 500}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": -1.0, "miss": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "sigma")
    trial_keys: ClassVar[tuple[str, ...]] = ("pair", "ground_truth")
    n_trial_u: ClassVar[int] = 1
    has_timeout_reward: ClassVar[bool] = True
    obs_dim: ClassVar[int] = 5
    num_actions: ClassVar[int] = 2

    def sample_trial(self, u, params):
        """pair int32[2] drawn uniformly among the four; ground_truth int32 (go = even difference)."""
        pair = jnp.asarray(_PAIRS, _I32)[_pick(u[0], jnp.arange(4, dtype=_I32))]
        return {"pair": pair, "ground_truth": ((pair[1] - pair[0]) % 2 == 0).astype(_I32)}

    def observations(self, trial, params, steps):
        pair = trial["pair"].astype(_I32)
        fix = jnp.zeros(5, _F32).at[0].set(1.0)
        # neurogym adds the stimulus to the channel (add_ob), on top of the fixation cue
        s1 = fix + jax.nn.one_hot(pair[0], 5, dtype=_F32)
        s2 = fix + jax.nn.one_hot(pair[1], 5, dtype=_F32)
        #                fixation stim1 delay_btw stim2 delay_aft decision
        return trial, jnp.stack([fix, s1, fix, s2, fix, jnp.zeros(5, _F32)])

    def timeout_reward(self, trial, params):
        return params.rewards["miss"] * trial["ground_truth"]
