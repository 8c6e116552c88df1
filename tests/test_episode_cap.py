"""episode.max_steps: auto follows the trial length (dt, timing, backend), a given cap that ends
episodes inside trials is said in one warning line, and cut_share agrees with the episode rule."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import config
from cli import check_trials, cli_main, cut_share, probe_env
from collector.episode import EpisodeSpec, advance

ROOT = Path(__file__).resolve().parents[1]
PDM = ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml"
DMS = ROOT / "experiments" / "delay_match_sample" / "tape_mpn.yaml"


def resolved(path, *overrides, batching="tape"):
    cfg = config.load(path, list(overrides))
    check_trials(cfg, probe_env(cfg), batching)
    return cfg


@pytest.mark.parametrize("backend", ["jax", "neurogym"])
@pytest.mark.parametrize("dt, trial", [(100, 22), (20, 110)])
def test_auto_is_the_trials_times_the_trial_length(backend, dt, trial, capsys):
    cfg = resolved(PDM, f"env.backend={backend}", f"env.kwargs.dt={dt}")
    assert cfg["episode"]["max_steps"] == 5 * trial
    assert "warning" not in capsys.readouterr().err


def test_auto_follows_a_longer_delay():
    """DelayMatchSample with a 3 s delay: trials of 52 steps, so 5 need 260 (the files had 200)."""
    cfg = resolved(DMS, "env.kwargs.timing={delay: 3000}")
    assert cfg["episode"]["max_steps"] == 5 * 52


def test_auto_of_variable_trials_is_the_longest():
    cfg = resolved(ROOT / "experiments" / "context_decision_making" / "tape_mpn.yaml")
    assert cfg["episode"]["max_steps"] == 5 * 40  # delays of 3 to 29 steps, rest 11 steps


def test_a_cap_that_cuts_trials_is_one_warning_line(capsys):
    cfg = resolved(PDM, "env.kwargs.dt=20", "episode.max_steps=200")
    assert cfg["episode"]["max_steps"] == 200  # used as given
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("warning: episode.max_steps 200 ends about 100% of episodes"), err
    assert "a trial lasts 110 steps" in err and "auto makes it 550" in err, err


@pytest.mark.parametrize("cap", [110, 250, 44])  # 5 whole trials; more; exactly 2 trials (no cut)
def test_a_cap_that_cuts_no_trial_says_nothing(cap, capsys):
    resolved(PDM, f"episode.max_steps={cap}")
    assert capsys.readouterr().err == ""


def test_auto_that_outgrows_the_tape_is_refused_naming_both(tmp_path, capsys):
    """dt 10: trials of 220 steps, so auto is 1100 rows and the default tape of 1024 cannot hold one."""
    assert cli_main([str(PDM), "--out", str(tmp_path / "run"), "--set", "env.kwargs.dt=10"], "tape") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tape.size: 1024 rows cannot hold one episode of up to 1101 rows" in err
    assert "auto is 5 trials x 220 steps" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, needle", [
    ("episode: {max_steps: autox}\n", "must be a number of steps or auto"),
    ("episode: {max_steps: 2.5}\n", "expected an integer or a string"),
    ("episode: {max_steps: true}\n", "expected an integer or a string"),
    ("episode: {max_steps: 0}\n", "> 0"),
    ("episode: {trials: null}\n", "auto needs episode.trials"),
])
def test_bad_caps_are_one_line(tmp_path, capsys, text, needle):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    assert cli_main([str(path), "--out", str(tmp_path / "run")], "tape") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "episode.max_steps" in err and needle in err, err


def test_the_run_folder_records_the_measured_cap(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "tape_dqn.py", str(PDM), "--out", str(out), "--no-progress", "--set", "env.kwargs.dt=50",
         "--set", "env.num_envs=4", "--set", "train.total_env_steps=512", "--set", "train.learning_starts=256",
         "--set", "train.buffer_capacity=4096", "--set", "eval.every_env_steps=512", "--set", "eval.trials=8",
         "--set", "eval.final_trials=8", "--set", "eval.num_envs=4"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning" not in proc.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["episode"]["max_steps"] == 5 * 44


def test_a_sweep_plan_holds_the_measured_cap():
    import sweep

    plan = sweep.make_plan(str(PDM), {"train.lr": [1e-3, 2e-3], "env.kwargs.dt": [100, 20]}, 2, "tape", [])
    sweep.check_programs(plan)
    caps = {(r["config"]["env"]["kwargs"]["dt"], r["config"]["episode"]["max_steps"])
            for p in plan["programs"] for r in p["runs"]}
    assert caps == {(100, 110), (20, 550)}


def reference_share(lengths, trials, max_steps):
    """Each group of `trials` sampled trials played from a trial start by the episode rule itself
    (collector.episode.advance): is the episode's last step a trial's last step?"""
    spec = EpisodeSpec(trials=trials, max_steps=max_steps)
    groups = [lengths[i:i + trials] for i in range(0, len(lengths) // trials * trials, trials)]
    cut = []
    for group in groups:
        ends = set(np.cumsum(group).tolist())
        pos, done, t = np.zeros(1, int), np.zeros(1, int), 0
        while True:
            t += 1
            step = advance(spec, pos, done, np.array([t in ends]))
            if step.ended[0]:
                cut.append(t not in ends)
                break
            pos, done = step.pos, step.ep_trials
    return float(np.mean(cut)) if cut else 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=40), st.integers(1, 5), st.integers(1, 60))
def test_cut_share_agrees_with_the_episode_rule(lengths, trials, max_steps):
    assert cut_share(lengths, trials, max_steps) == pytest.approx(reference_share(lengths, trials, max_steps))


def test_a_lane_too_short_for_the_measured_cap_is_refused(tmp_path, capsys):
    assert cli_main([str(PDM), "--out", str(tmp_path / "run"), "--set", "tape.lanes=16"], "tape") == 2
    err = capsys.readouterr().err.strip()
    assert "tape.lanes: a lane of 64 rows" in err and "up to 111 rows" in err and "auto is 5 trials x 22" in err, err
    assert not (tmp_path / "run").exists()
