"""The two entry points, run for real on a NeuroGym task with a tiny budget, and their handling of
bad input (one line on stderr, exit status 2, no traceback)."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import config
from cli import cli_main
from runs import METRICS

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--set", "env.num_envs=4", "--set", "env.backend=neurogym", "--set", "episode.trials=2", "--set", "episode.max_steps=60",
    "--set", "model.memory_kwargs={hidden: 8, input_proj: 4, input_bias: true}", "--set", "model.head=[8]",
    "--set", "train.total_env_steps=640", "--set", "train.steps_per_iter=16", "--set", "train.learning_starts=128",
    "--set", "train.buffer_capacity=2048", "--set", "tape.size=128", "--set", "segment.batch_size=8",
    "--set", "eval.every_env_steps=320", "--set", "eval.trials=10", "--set", "eval.final_trials=10",
    "--set", "eval.num_envs=4", "--no-progress",
]


@pytest.mark.parametrize(
    "script, experiment",
    [("tape_dqn.py", "tape_mpn.yaml"), ("segment_dqn.py", "segment_mpn_10.yaml")],
)
def test_entry_point_runs_and_writes_its_files(tmp_path, script, experiment):
    out = tmp_path / "run"
    cfg = ROOT / "experiments" / "perceptual_decision_making" / experiment
    proc = subprocess.run(
        [sys.executable, script, str(cfg), "--out", str(out), "--seed", "3", *TINY],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(out) in proc.stdout + proc.stderr
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["env_steps"]) for r in rows] == [320, 640]
    assert list(rows[0]) == METRICS
    assert int(rows[-1]["updates"]) > 0 and float(rows[-1]["loss"]) >= 0.0
    for r in rows:
        assert 0.0 <= float(r["eval_performance"]) <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 640 and summary["final_eval_trials"] == 10 and summary["seed"] == 3
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["seed"] == 3 and resolved["tape"]["size"] == 128
    assert (out / "params.msgpack").stat().st_size > 0


def _write(tmp_path, text):
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return str(p)


BAD = [
    ("model:\n  memroy: mpn\n", ["unknown key 'model.memroy'", "did you mean 'memory'"]),
    ("train: {gamma: 1.5}\n", ["train.gamma", "[0, 1)"]),
    ("train: {lr: fast}\n", ["train.lr", "expected"]),
    ("env: {num_envs: 0}\n", ["env.num_envs", "> 0"]),
    ("env: {task: PerceptualDecisionMaking-v9}\n", ["env.task", "unknown NeuroGym task", "did you mean"]),
    ("model: {memory: lstm}\n", ["model.memory", "unknown memory model 'lstm'"]),
    ("model: {memory_kwargs: {hiden: 8}}\n", ["model.memory_kwargs", "hiden"]),
    ("env: {kwargs: {sigmaa: 1.0}}\n", ["env.kwargs", "sigmaa"]),
    ("tape: {size: 10}\n", ["tape.size", "cannot hold one episode"]),
    ("segment: {length: 200000}\n", ["segment.length", "longer than the buffer"]),
    ("env: [1, 2\n", ["not valid YAML"]),
    # hostile inputs: each once accepted, or a traceback
    ("", ["experiment file is empty"]),
    ("# only a comment\n\n", ["experiment file is empty"]),
    ("x: " + "[" * 20000 + "]" * 20000 + "\n", ["nested"]),
    ("model: {memory_kwargs: {hidden: 0}}\n", ["model.memory_kwargs.hidden", "> 0"]),
    ("model: {memory_kwargs: {lam_max: 5}}\n", ["model.memory_kwargs.lam_max", "(0, 1]"]),
    ("model: {memory_kwargs: {m_clamp: -1}}\n", ["model.memory_kwargs.m_clamp", "> 0"]),
    ("model: {memory_kwargs: {hidden: 2.5}}\n", ["model.memory_kwargs.hidden", "integer"]),
    ("episode: {max_steps: 200}\nsegment: {length: 5000}\n", ["segment.length", "mostly padding"]),
    ("env: {kwargs: {dt: 1000000}}\n", ["env.kwargs.dt", "no step"]),
    ("env: {kwargs: {dt: 0.001}}\n", ["env.kwargs.dt", "episode.max_steps"]),
    ("env: {backend: neurogym, kwargs: {dt: 1000000}}\n", ["env.kwargs", "IndexError"]),
    ("eval: {num_envs: 10000000}\n", ["eval.num_envs", "GiB"]),
    ("tape: {size: 100000000}\ntrain: {buffer_capacity: 100000000}\n", ["tape.size", "GiB"]),
    ("env: {num_envs: 1000000}\n", ["train.buffer_capacity", "env.num_envs"]),
    ("env: {num_envs: 1000000}\ntrain: {buffer_capacity: 20000000}\n", ["GiB"]),
    # integers past the 32-bit range they become, once a traceback after the folder was made
    ("train: {total_env_steps: 1000000000000000}\n", ["train.total_env_steps", "32-bit"]),
    ("eval: {trials: 4294967296}\n", ["eval.trials", "32-bit"]),
    ("train: {eps_decay_steps: 1000000000000}\n", ["train.eps_decay_steps", "32-bit"]),
    ("train: {target_period: 1000000000000}\n", ["train.target_period", "32-bit"]),
    ("train: {learning_starts: 1000000000000}\n", ["train.learning_starts", "32-bit"]),
    ("segment: {stride: 1000000000000}\n", ["segment.stride", "32-bit"]),
    ("episode: {trials: 1000000000000}\n", ["episode.trials", "32-bit"]),
    ("seed: 4294967296\n", ["seed", "at most 4294967295"]),
    ("train: {total_env_steps: 2147483600}\n", ["train.total_env_steps", "overflows the 32-bit step counter"]),
    ("train: {total_env_steps: 2000000000, updates_per_iter: 100000}\n", ["train.updates_per_iter", "overflow"]),
    # non-finite numbers, once caught only after set-up and compilation
    ("train: {lr: .inf}\n", ["train.lr", "finite"]),
    ("env: {kwargs: {sigma: .nan}}\n", ["env.kwargs.sigma", "finite"]),
    ("env: {kwargs: {rewards: {correct: .nan}}}\n", ["env.kwargs.rewards.correct", "finite"]),
    ("env: {backend: neurogym, kwargs: {timing: {fixation: -100}}}\n", ["env.kwargs.timing.fixation", ">= 0"]),
    # names that would put the run folder outside runs/, and a key given twice
    ("name: ../../../x\n", ["name", "plain folder name"]),
    ("name: /tmp/elsewhere\n", ["name", "plain folder name"]),
    ('name: "a\\0b"\n', ["name", "control characters"]),
    ("env:\n  task: PerceptualDecisionMaking-v0\n  task: DelayMatchSample-v0\n", ["'task' is given twice"]),
]


@pytest.mark.parametrize("text, needles", BAD, ids=[t[:30] for t, _ in BAD])
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, text, needles):
    status = cli_main([_write(tmp_path, text), "--out", str(tmp_path / "run")], "tape")
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "run").exists()  # failed before any work


def test_an_alias_bomb_is_refused_in_one_short_line(tmp_path, capsys):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
               for i in range(1, 9)]
    text = "\n".join(levels) + "\nenv: {kwargs: {timing: {fixation: *a8}}}\n"
    assert cli_main([_write(tmp_path, text), "--out", str(tmp_path / "run")], "tape") == 2
    err = capsys.readouterr().err.strip()
    assert len(err) < 300 and "more than" in err, err[:300]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("out", ["file/below", "x" * 300, "/proc/no-such-place/run"])
def test_an_unusable_out_is_one_line(tmp_path, capsys, out, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("a file, not a folder")
    good = str(ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml")
    assert cli_main([good, "--out", out], "tape") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "Traceback" not in err, err


def test_a_file_with_only_the_task_gets_the_tuned_agent(tmp_path):
    cfg = config.load(_write(tmp_path, "env: {task: DelayMatchSample-v0}\n"))
    tuned = config.load(ROOT / "experiments" / "delay_match_sample" / "tape_mpn.yaml")
    for section in ("episode", "model", "train", "tape", "eval"):
        for key, value in cfg[section].items():
            if key not in ("max_steps", "target"):  # an episode bound per task; targets are per task
                assert value == tuned[section][key], (section, key)


def test_bad_override_and_missing_file(tmp_path, capsys):
    good = str(ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml")
    for argv, needle in [
        ([good, "--set", "train.gama=0.5"], "did you mean 'gamma'"),
        ([good, "--set", "train.gamma"], "expected key.sub=value"),
        ([str(tmp_path / "nope.yaml")], "no such file"),
    ]:
        assert cli_main(argv + ["--out", str(tmp_path / "r")], "tape") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err


def test_set_one_entry_of_a_mapping_keeps_the_others():
    exp = ROOT / "experiments" / "delay_match_sample" / "tape_mpn.yaml"
    base = config.load(exp)
    cfg = config.load(exp, ["model.memory_kwargs.eta_init=0.3", "env.kwargs.timing.delay=500"])
    assert cfg["model"]["memory_kwargs"] == {**base["model"]["memory_kwargs"], "eta_init": 0.3}
    assert cfg["env"]["kwargs"]["timing"] == {**base["env"]["kwargs"].get("timing", {}), "delay": 500}
    # a whole mapping still replaces the file's; keys it does not give take the tuned defaults
    assert config.load(exp, ["model.memory_kwargs={hidden: 8}"])["model"]["memory_kwargs"] == {
        **config.MEMORY_DEFAULTS["mpn"], "hidden": 8}
    assert config.load(exp, ["model.memory_kwargs={hidden: 8, input_bias: false, eta_init: 0.1}"])["model"][
        "memory_kwargs"] == {"hidden": 8, "input_proj": 10, "input_bias": False, "eta_init": 0.1}


def test_existing_run_folder_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("precious\n")
    good = str(ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml")
    assert cli_main([good, "--out", str(out)], "tape") == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (out / "metrics.csv").read_text() == "precious\n"


def test_exit_status_from_a_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "segment_dqn.py", _write(tmp_path, "segment: {burn_in: -1}\n")],
        cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2 and "segment.burn_in" in proc.stderr and "Traceback" not in proc.stderr


def test_every_experiment_file_is_valid():
    files = sorted((ROOT / "experiments").glob("*/*.yaml"))
    assert len(files) >= 15
    for f in files:
        cfg = config.load(f)
        assert cfg["name"] == f.stem


def test_readme_explains_every_config_key():
    readme = (ROOT / "README.md").read_text()
    missing = [key for key, _ in config.iter_options() if f"`{key}`" not in readme]
    assert not missing, f"README.md does not explain: {missing}"


def test_parallel_scan_fallbacks_are_counted_in_metrics(tmp_path):
    """MPN(scan="parallel") that cannot converge in one Newton step falls back to the sequential
    scan; the run counts every fallback in metrics.csv instead of hiding it."""
    out = tmp_path / "run"
    cfg = ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml"
    i = TINY.index("model.memory_kwargs={hidden: 8, input_proj: 4, input_bias: true}")
    args = TINY[: i - 1] + TINY[i + 1 :]
    proc = subprocess.run(
        [sys.executable, "tape_dqn.py", str(cfg), "--out", str(out), *args,
         "--set", "model.memory_kwargs={hidden: 8, input_proj: 4, input_bias: true, scan: parallel, newton_iters: 1, eta_init: 3.0}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert int(rows[-1]["scan_fallbacks"]) > 0


def test_hostile_environment_variables_are_warnings_not_tracebacks(monkeypatch, capsys):
    import cli

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/proc/no-such-place/xla")
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "soon")
    cli.enable_compile_cache()
    err = capsys.readouterr().err
    assert "compile cache" in err and "unusable" in err and "Traceback" not in err
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(ROOT / "README.md"))  # a file, not a folder
    cli.enable_compile_cache()
    assert "unusable" in capsys.readouterr().err


@pytest.mark.parametrize("flags, needle", [(["--seeds", "0"], "--seeds"), (["--seeds", "100000"], "--seeds"),
                                           (["--seed", "-3"], "seed")])
def test_bad_seed_flags_are_one_line(tmp_path, capsys, flags, needle):
    good = str(ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml")
    assert cli_main([good, "--out", str(tmp_path / "run"), *flags], "tape") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "run").exists()


def test_both_backends_share_one_schedule(tmp_path):
    """One driver (training.py): a metrics row every ceil(every_env_steps / per_iter) iterations and
    after the last, the same on both backends, also when every_env_steps is not a multiple of an
    iteration's env steps (here 150 against 64); the new columns are written by both."""
    cfg = ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml"
    steps = {}
    for backend in ("neurogym", "jax"):
        out = tmp_path / backend
        flags = [*TINY, "--set", f"env.backend={backend}", "--set", "eval.every_env_steps=150"]
        assert cli_main([str(cfg), "--out", str(out), *flags], "tape") == 0
        rows = list(csv.DictReader(open(out / "metrics.csv")))
        steps[backend] = [(int(r["env_steps"]), int(r["updates"])) for r in rows]
        assert all(r["grad_norm"] != "" and int(r["dropped_episodes"]) == 0 for r in rows)
        assert json.loads((out / "run.json").read_text())["batching"] == "tape"
    assert steps["neurogym"] == steps["jax"] == [(192, 8), (384, 20), (576, 32), (640, 36)]


@pytest.mark.parametrize("command", [["tape_dqn.py"], ["segment_dqn.py"], ["-m", "sweep"], ["-m", "plotting.dynamics"],
                                     ["-m", "plotting.psychometric"], ["-m", "benchmarks.throughput"],
                                     ["-m", "benchmarks.scan"]])
@pytest.mark.parametrize("variable, value", [("JAX_PLATFORMS", "gpu"), ("JAX_NUM_CPU_DEVICES", "abc")])
def test_a_jax_variable_jax_refuses_is_one_line(tmp_path, command, variable, value):
    """Once a traceback from inside jax (at import, or when its backend starts)."""
    import os

    good = str(ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml")
    proc = subprocess.run([sys.executable, *command, good, "--out", str(tmp_path / "run")], cwd=ROOT,
                          env=dict(os.environ, **{variable: value}), capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"environment variable {variable}='{value}'" in err, err
    assert not (tmp_path / "run").exists()


ENTRY_POINTS = [["tape_dqn.py"], ["segment_dqn.py"], ["-m", "sweep"], *(["-m", f"plotting.{m}"] for m in (
    "compare", "dynamics", "psychometric", "sweep", "table", "throughput")), *(["-m", f"benchmarks.{m}"] for m in (
    "coldstart", "fingerprint", "panel", "scan", "sweep", "throughput"))]


@pytest.mark.parametrize("command", ENTRY_POINTS, ids=[c[-1] for c in ENTRY_POINTS])
def test_a_bad_flag_is_one_line_for_every_entry_point(command):
    """argparse's own refusal prints a usage block of 3-5 lines; every entry point gives one."""
    proc = subprocess.run([sys.executable, *command, "--no-such-flag"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and ": error: " in err, err
