"""Start-up hangs: the GRU's start-up never hangs (jaxlib 0.10.2 deadlocks on concurrent batched
LAPACK QRs, the orthogonal initialisation of its three recurrent kernels) and its initial values
stay flax's; and a signal stops a program whose main thread is stuck (in set-up or in training)."""
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memory.gru import GRU, orthogonal

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shape", [(64, 64), (3, 64), (64, 3), (4, 5, 6)])
def test_orthogonal_is_flax_orthogonal_bit_for_bit_under_vmap(shape):
    reference = nn.initializers.orthogonal()  # unbatched: one LAPACK QR per call
    keys = jax.random.split(jax.random.key(1), 3)
    expected = np.stack([np.asarray(reference(k, shape, jnp.float32)) for k in keys])
    once = jax.jit(jax.vmap(lambda k: orthogonal(k, shape)))(keys)
    nested = jax.jit(jax.vmap(jax.vmap(lambda k: orthogonal(k, shape))))(keys.reshape(3, 1))
    np.testing.assert_array_equal(np.asarray(once), expected)
    np.testing.assert_array_equal(np.asarray(nested)[:, 0], expected)
    np.testing.assert_array_equal(np.asarray(orthogonal(keys[0], shape)), expected[0])


def test_gru_init_vmapped_equals_one_seed_at_a_time():
    x, start = jnp.zeros((5, 3)), jnp.zeros(5, bool)
    keys = jax.random.split(jax.random.key(0), 2)
    batched = jax.jit(jax.vmap(lambda k: GRU(64).init(k, x, start)))(keys)
    single = [GRU(64).init(k, x, start) for k in keys]
    jax.tree.map(lambda b, *s: np.testing.assert_array_equal(np.asarray(b), np.stack(s)), batched, *single)


# The jax backend's real start-up program for the tuned GRU experiment with 2 seeds, called again
# and again. Before the fix it hung within 200 calls in 6 of 6 launches (and within 20 calls in
# 2 of 5) on a 2-core machine; now each call takes milliseconds.
_LOOP = textwrap.dedent("""
    import jax, jax.numpy as jnp
    from backends import make_jax_env
    from cli import check_run
    from config import load
    from learner import build_network, make_jax_train
    cfg = load("experiments/perceptual_decision_making/tape_gru.yaml", ["train.buffer_capacity=4096"])
    check_run(cfg, "tape", 2)  # as tape_dqn.py does: also measures episode.max_steps: auto
    env, env_params = make_jax_env(cfg)
    t = make_jax_train(cfg, "tape", env, env_params, build_network(cfg, env.num_actions))
    init = jax.jit(jax.vmap(t.init))
    for _ in range(300):
        jax.block_until_ready(init(jnp.asarray([0, 1], jnp.uint32), {}))
    print("started 300 times")
""")


def test_gru_start_up_program_300_times_under_a_time_limit():
    proc = subprocess.run([sys.executable, "-c", _LOOP], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "started 300 times" in proc.stdout, proc.stderr[-2000:]


TINY_GRU = [
    "--seeds", "2", "--no-progress", "--set", "train.total_env_steps=256", "--set", "train.learning_starts=128",
    "--set", "train.buffer_capacity=2048", "--set", "episode.max_steps=100", "--set", "tape.size=128", "--set", "eval.every_env_steps=256",
    "--set", "eval.trials=8", "--set", "eval.final_trials=8", "--set", "eval.num_envs=4",
]


def test_tape_dqn_gru_with_two_seeds_starts_every_time(tmp_path):
    """The command that hung (a GRU program with --seeds 2), launched twice, each under a limit."""
    experiment = ROOT / "experiments" / "perceptual_decision_making" / "tape_gru.yaml"
    for i in range(2):
        proc = subprocess.run([sys.executable, "tape_dqn.py", str(experiment), "--out", str(tmp_path / f"r{i}"),
                               *TINY_GRU], cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (tmp_path / f"r{i}" / "seed1" / "summary.json").is_file()


# ---- a signal stops a program whose main thread never comes back -------------------------------

# tape_dqn.py with one part made to block for ever, as a hung XLA program blocks the main thread
# (the Python signal handler then never runs, and the driver never sees the flag).
_STUCK = textwrap.dedent("""
    import sys, threading
    import backends, training
    from cli import cli_main
    where = sys.argv.pop(1)
    if where == "setup":
        training.make_backend = lambda *a, **k: threading.Event().wait()
    else:
        real, calls = backends.JaxBackend.run, []
        def run(self, n):
            calls.append(n)
            if len(calls) > (where == "training"):
                sys.stderr.write("stuck\\n"); sys.stderr.flush(); threading.Event().wait()
            return real(self, n)
        backends.JaxBackend.run = run
    sys.exit(cli_main(sys.argv[1:], batching="tape"))
""")
TINY_MPN = [
    "--no-progress", "--set", "env.num_envs=4", "--set", "episode.trials=2", "--set", "episode.max_steps=60",
    "--set", "model.memory_kwargs={hidden: 8, input_proj: 4, input_bias: true}", "--set", "model.head=[8]",
    "--set", "train.total_env_steps=640", "--set", "train.steps_per_iter=16", "--set", "train.learning_starts=128",
    "--set", "train.buffer_capacity=2048", "--set", "tape.size=128", "--set", "eval.every_env_steps=320",
    "--set", "eval.trials=10", "--set", "eval.final_trials=10", "--set", "eval.num_envs=4",
]
_PDM = str(ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml")


def _start_stuck(where, out):
    return subprocess.Popen([sys.executable, "-c", _STUCK, where, _PDM, "--out", str(out), *TINY_MPN], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _wait_for_line(proc, text, timeout=180):
    t0, seen = time.time(), ""
    while text not in seen:
        assert proc.poll() is None, seen + proc.stderr.read()
        assert time.time() - t0 < timeout, seen
        seen += proc.stderr.readline()
    return seen


def test_sigterm_stops_a_set_up_stuck_in_native_code_and_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    proc = _start_stuck("setup", out)
    _wait_for_line(proc, "writing")  # the run folder is made; the set-up blocks for ever from here
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert time.time() - t0 < 30
    assert "did not stop within 3 s of SIGTERM" in err and "nothing was written" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_sigterm_stops_a_first_block_stuck_in_native_code_and_keeps_the_checkpoint(tmp_path):
    """Stuck in the first block of iterations (where the training program compiles): nothing
    trained yet, so the set-up's grace applies; the checkpoint written before it is kept."""
    out = tmp_path / "run"
    proc = _start_stuck("first-block", out)
    _wait_for_line(proc, "stuck")
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and time.time() - t0 < 30, err
    assert f"within 3 s of SIGTERM: stopped it; the last checkpoint is kept; continue with --resume {out}" in err
    assert (out / "checkpoint.pkl").is_file()


def test_a_second_signal_stops_a_stuck_training_at_once_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    proc = _start_stuck("training", out)
    _wait_for_line(proc, "stuck")  # after the first block and its row; the checkpoint at 0 steps exists
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert proc.poll() is None  # the first signal waits for the block in progress (TRAIN_GRACE_S)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and time.time() - t0 < 30, err
    assert f"a second SIGTERM: stopped it; the last checkpoint is kept; continue with --resume {out}" in err, err
    assert "Traceback" not in err
    proc = subprocess.run([sys.executable, "tape_dqn.py", "--resume", str(out), "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "summary.json").is_file()
    assert [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]] == ["320", "640"]
