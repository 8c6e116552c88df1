"""PostDecisionWager-v0 (neurogym 2.3.1, envs/native/postdecisionwager.py).

A perceptual discrimination (as PerceptualDecisionMaking) where, on a random half of the trials
(wager trials), a sure-bet option (action 3) that pays 0.7 * `correct` is offered: its cue appears
during the delay, `pre_sure` after the stimulus ends, and stays on in `decision`.

Periods: fixation, stimulus, delay, decision in sequence; on wager trials neurogym also adds
`pre_sure`, starting with the delay (so it overlaps it). The port keeps `pre_sure` in `periods` and
`timing` (its length is sampled and may be forced like any other), but it takes no steps of its own:
the trial ends with `decision`, and pre_sure only sets when the sure cue comes on. The port requires
pre_sure to end within the trial (its longest draw at most the shortest delay plus decision, as at
the defaults: 750 ms vs 1200 + 100 ms); a longer one would stretch neurogym's trial past the decision.
The default pre_sure timing is ("uniform", (500, 750)), the law of neurogym's lambda.

obs = [fixation, stim_1, stim_2, sure]: the fixation cue in fixation, stimulus and delay;
cos(theta - theta_gt) * coh / 200 + 0.5 on the two stimulus channels in `stimulus`, with noise
(sigma / sqrt(dt)) on all four channels there (neurogym's add_randn without `where`); on wager
trials the sure cue from pre_sure's end to the end of the trial. trial = {wager in {0, 1} (neurogym
stores True / False), ground_truth in {0, 1}, coh in {0, 3.2, 6.4, 12.8, 25.6, 51.2}}.
Ground truth (info["gt"], gt_now) = ground_truth + 1 in `decision`.

Rules, quirks kept: a non-zero action in `fixation` costs `abort` (the trial goes on: neurogym's
abort is False); in `decision` the first non-zero action ends the trial: action 3 pays the sure
reward 0.7 * `correct` on a wager trial, with performance (sure - fail) / (correct - fail) (0.7 at
the defaults), and `abort` on other trials; any other action pays `correct` (performance 1) only
if it EQUALS trial["ground_truth"], else `fail`. Since choices are actions 1 and 2 but ground_truth
is 0 or 1, neurogym rewards action 1 on ground_truth-1 trials (whose gt says 2) and no choice at all
on ground_truth-0 trials; the port does the same. Following the gt therefore never pays; the best
policy answers 1 on non-wager trials and, on wager trials, takes the sure bet unless the evidence
for ground_truth 1 exceeds 0.7. The sure reward follows `correct` (a `sure` reward is not an
option, neurogym overwrites it). dim_ring is accepted only at 2 (neurogym's task fails at any other
value: its observation has two stimulus channels).
Keyword arguments: dt, rewards, timing, sigma, dim_ring (2 only).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from collector.tasks.base import (_F32, _I32, EnvParams, EnvState, TrialTask, _pick, _take,
                                  _uniforms_and_normals, check_dim_ring, period_index)

_FIX, _STIM, _DELAY, _DEC, _PRE = range(5)  # indices in `periods`


@dataclasses.dataclass(frozen=True)
class PostDecisionWager(TrialTask):
    dim_ring: ClassVar[int] = 2  # the only value neurogym's task runs with

    name: ClassVar[str] = "PostDecisionWager-v0"
    periods: ClassVar[tuple[str, ...]] = ("fixation", "stimulus", "delay", "decision", "pre_sure")
    default_timing: ClassVar[dict] = {"fixation": 100, "stimulus": ("truncated_exponential", (180, 100, 900)),
                                      "delay": ("truncated_exponential", (1350, 1200, 1800)),
                                      "decision": 100, "pre_sure": ("uniform", (500, 750))}
    default_rewards: ClassVar[dict] = {"abort": -0.1, "correct": 1.0, "fail": 0.0}
    kwargs: ClassVar[tuple[str, ...]] = ("dt", "rewards", "timing", "dim_ring", "sigma")
    trial_keys: ClassVar[tuple[str, ...]] = ("wager", "ground_truth", "coh")
    n_trial_u: ClassVar[int] = 3
    noise: ClassVar[dict] = {"stimulus": "all"}
    obs_dim: ClassVar[int] = 4
    num_actions: ClassVar[int] = 4

    @classmethod
    def make(cls, **kw):
        if check_dim_ring(cls.name, kw) != 2:
            raise ValueError(f"{cls.name}: dim_ring must be 2 (neurogym's task has two stimulus channels "
                             f"and fails at any other value)")
        env = cls()
        params = env._make_params(cohs=[0, 3.2, 6.4, 12.8, 25.6, 51.2], **kw)
        t = params.timing
        if int(t[_PRE].max_steps) > int(t[_DELAY].min_steps) + int(t[_DEC].min_steps):
            raise ValueError(f"{cls.name}: timing['pre_sure'] may last longer than delay + decision; the port "
                             f"supports only a pre_sure that ends within the trial")
        if float(params.rewards["correct"]) == float(params.rewards["fail"]):
            raise ValueError(f"{cls.name}: rewards 'correct' and 'fail' must differ (neurogym divides by "
                             f"their difference for the sure bet's performance)")
        return env, params

    def sample_trial(self, u, params):
        return {"wager": _pick(u[0], jnp.asarray([1, 0], _I32)),
                "ground_truth": _pick(u[1], jnp.asarray([0, 1], _I32)),
                "coh": _pick(u[2], params.cohs)}

    def gt_action(self, trial):
        return trial["ground_truth"].astype(_I32) + 1

    def _complete_trial(self, trial, params, steps):
        """state.stim = [the four periods' rows (noise-free, without the sure cue), sure-cue onset]."""
        theta = jnp.asarray(self._theta(), _F32)
        stim = jnp.cos(theta - _take(theta, trial["ground_truth"])) * (trial["coh"].astype(_F32) / 200) + 0.5
        fix = jnp.asarray([1.0, 0.0, 0.0, 0.0], _F32)
        table = jnp.stack([fix, jnp.concatenate([jnp.ones(1, _F32), stim, jnp.zeros(1, _F32)]), fix,
                           jnp.zeros(4, _F32)])
        sure_on = steps[_FIX] + steps[_STIM] + steps[_PRE]  # pre_sure starts with the delay
        return trial, jnp.concatenate([table.reshape(-1), sure_on.astype(_F32)[None]])

    def _obs(self, p, state, noise):
        table = state.stim[:16].reshape(4, 4)
        clean = jnp.sum(jnp.where((jnp.arange(4, dtype=_I32) == p)[:, None], table, 0.0), axis=0)
        sure = (state.trial["wager"] == 1) & (p >= _DELAY) & (jnp.asarray(state.t, _F32) >= state.stim[16])
        clean = clean.at[3].add(sure.astype(_F32))
        return (clean + jnp.where(p == _STIM, noise, 0.0)).astype(_F32)

    def _sample_trial(self, u, params, num_tr, forced=None, durations=None):
        # pre_sure overlaps the delay: it takes no steps of its own, so the trial ends with `decision`
        state = super()._sample_trial(u, params, num_tr, forced, durations)
        return state.replace(ends=state.ends.at[_PRE].set(state.ends[_DEC]))

    def step(self, key, state: EnvState, action, params: EnvParams):
        u, z = _uniforms_and_normals(key, self._n_u, self.noise_dim)
        action = jnp.asarray(action, _I32)
        p = period_index(state)
        rw = params.rewards
        moved = action != 0
        in_fix, in_dec = p == _FIX, p == _DEC
        wager = state.trial["wager"] == 1
        sure = in_dec & (action == 3)
        hit = in_dec & moved & ~sure & (action == state.trial["ground_truth"])  # neurogym's comparison
        sure_reward = 0.7 * rw["correct"]
        reward = jnp.where(in_fix & moved, rw["abort"],
                           jnp.where(sure, jnp.where(wager, sure_reward, rw["abort"]),
                                     jnp.where(in_dec & moved, jnp.where(hit, rw["correct"], rw["fail"]), 0.0)))
        perf = jnp.where(sure & wager, (sure_reward - rw["fail"]) / (rw["correct"] - rw["fail"]),
                         hit.astype(_F32))
        ended = (in_dec & moved) | (in_fix & moved & params.abort)
        timeout = state.t + 1 >= state.ends[-1]
        return self._advance(u, z, state, params, ended | timeout, reward.astype(_F32),
                             self.gt_now(state, params), perf)
