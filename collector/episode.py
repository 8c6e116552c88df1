"""The episode rule: how an RL episode is cut from a NeuroGym task's endless stream of trials.

NeuroGym tasks never end by themselves. An RL episode is cut after `trials` finished trials or
`max_steps` steps, whichever comes first, and the cut is a truncation (no terminal state). The
memory resets at every episode start and, with `reset_on_trial`, at every trial start too.

`EpisodeSpec` holds those settings and `advance` applies them for one vector step; both
collectors (collector/host.py, collector/jax_collector.py) and the greedy rollouts of the analysis
commands (plotting/rollout.py, plotting/dynamics.py) use it, so the rule is written here only.
docs/tasks.md states the task semantics this relies on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True)
class EpisodeSpec:
    """How an RL episode is cut from the endless stream of trials."""

    trials: int | None = 5  # end the episode after this many finished trials (None: steps only)
    max_steps: int = 500  # and after at most this many steps
    reset_on_trial: bool = True  # reset the memory at every trial boundary too

    @property
    def max_rows(self) -> int:
        """Rows an episode can take in a buffer: its transitions plus its final observation."""
        return self.max_steps + 1


class EpisodeStep(NamedTuple):
    """The episode rule's verdict on one vector step of N envs; every field is [N]."""

    ended: Any  # bool: the episode ends with this step (its next observation is the final row)
    trial_start: Any  # bool: the next observation starts a trial whose memory resets (new_trial
    #                   and reset_on_trial); the reset flag of an ended episode's final row
    start: Any  # bool: the memory resets before the next observation (trial_start or ended)
    steps: Any  # steps of the current episode including this one: the final row's index if ended
    pos: Any  # steps of the episode the next observation belongs to (0 where ended)
    ep_trials: Any  # trials finished in that episode (0 where ended)


def advance(spec: EpisodeSpec, pos, ep_trials, new_trial, xp=np) -> EpisodeStep:
    """Apply the episode rule to one step of N envs.

    pos [N] int: steps taken in the current episode before this step; ep_trials [N] int: trials
    finished in it before this step; new_trial [N] bool: this step ended a trial. Pure; `xp` is
    numpy (host loops) or jax.numpy (inside jit), and the integer dtypes of pos and ep_trials are
    kept."""
    steps = pos + 1
    trials = ep_trials + new_trial
    ended = steps >= spec.max_steps
    if spec.trials is not None:
        ended = ended | (trials >= spec.trials)
    trial_start = new_trial & spec.reset_on_trial
    return EpisodeStep(
        ended=ended, trial_start=trial_start, start=trial_start | ended, steps=steps,
        pos=xp.where(ended, 0, steps), ep_trials=xp.where(ended, 0, trials),
    )
