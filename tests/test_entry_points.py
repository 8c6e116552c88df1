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
from training import METRICS, cli_main

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
]


@pytest.mark.parametrize("text, needles", BAD)
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, text, needles):
    status = cli_main([_write(tmp_path, text), "--out", str(tmp_path / "run")], "tape")
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "run").exists()  # failed before any work


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
