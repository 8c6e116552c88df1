"""Run folders: what a run writes, in one place for training (the writer) and plotting (a reader).

A run program writes one folder per seed (`<out>/` for one seed, `<out>/seed<k>/` for several):

- run.json: the run's identity and how it was trained (run id, program, batching, backend, seed,
  the program's seeds, metrics schema version); plotting reads the batching mode from here;
- config.yaml: the resolved config (every key, defaults filled in);
- metrics.csv: one row per evaluation, columns `METRICS`, appended and flushed row by row;
- summary.json and params.msgpack: written when the seed finishes.

The top folder also holds run.json (the program's), checkpoint.pkl and a lock file while it runs.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from pathlib import Path

import yaml

from config import ConfigError

# The metrics.csv columns, in order (the schema training writes and plotting reads):
# env_steps, updates: counts at the row; wall_s: seconds since the program started training;
# eval_performance / eval_reward_per_trial: greedy evaluation (eval.trials trials);
# train_performance: mean performance of the training trials since the previous row;
# loss, q_mean, grad_norm: means over the update blocks since the previous row (NaN before the first
# update); epsilon: the exploration rate of the last iteration; scan_fallbacks: parallel-scan
# fallbacks of the memory since the previous row; dropped_episodes: episodes the jax collector had
# no recording slot for since the previous row (always 0 on the neurogym backend).
METRICS = [
    "env_steps", "updates", "wall_s", "eval_performance", "eval_reward_per_trial",
    "train_performance", "loss", "q_mean", "epsilon", "scan_fallbacks", "grad_norm", "dropped_episodes",
]
REQUIRED_COLUMNS = ("env_steps", "wall_s", "eval_performance")  # every version of the file has these
SCHEMA = 2  # metrics schema version in run.json (1: before grad_norm and dropped_episodes)


class RunStopped(Exception):
    """The run stopped before its end (signal, numerical guard, failed write); `status` is the exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


RUN_FILE = "run.json"  # the run's identity: run id, program, batching, backend, seed(s)
LOCK_FILE = ".lock"  # held (flock) by the process that runs or resumes the folder


def write_error(path, e: OSError) -> RunStopped:
    return RunStopped(f"cannot write {path}: {e.strerror or e}", 2)


class RunLock:
    """An exclusive lock on a run folder for as long as this process runs it, so that two
    processes never train into (or resume) the same folder at once. flock is released by the
    kernel when the process ends, however it ends (kill -9 included)."""

    def __init__(self, top: Path, name: str = LOCK_FILE):
        """name: the lock file in `top` (a sweep's processes each hold their own)."""
        self.path = top / name
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"{top}: cannot open its lock file: {e.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise ConfigError(f"{top}: another process (pid {other}) is running this run now; wait for it or stop it first") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        os.close(self.fd)


def make_folder(path: Path, flag: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot create the run folder: {e.strerror or e}") from None


class RunFolder:
    """The run's output folder: config.yaml, metrics.csv (appended and flushed row by row),
    summary.json and params.msgpack. A new run never reuses a non-empty folder; `reopen` continues
    a checkpointed one, first cutting metrics.csv back to the rows the checkpoint had seen."""

    @staticmethod
    def check(path: Path) -> None:
        try:
            taken = path.exists() and (not path.is_dir() or any(path.iterdir()))
        except OSError as e:
            raise ConfigError(f"--out {path}: cannot use it: {e.strerror or e}") from None
        if taken:
            raise ConfigError(f"--out {path}: exists and is not an empty folder; choose another")

    def __init__(self, path: Path, cfg: dict | None, rows: int | None = None, last: dict | None = None,
                 identity: dict | None = None):
        """A new folder (rows None: writes run.json from `identity`, config.yaml and the metrics
        header) or, with `rows`, the reopened folder of an interrupted run."""
        self.path = path
        csv_path = path / "metrics.csv"
        if rows is None:
            make_folder(path, "--out")
            try:
                atomic_write(path / RUN_FILE, json.dumps(dict(identity or {}, schema=SCHEMA), indent=2).encode())
                (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
                self._file = open(csv_path, "w", newline="")
            except OSError as e:
                raise ConfigError(f"--out {path}: cannot write the run folder: {e.strerror or e}") from None
            self._csv = csv.DictWriter(self._file, fieldnames=METRICS, lineterminator="\n")
            self._csv.writeheader()
        else:
            kept = self._kept_lines(csv_path, rows, last)
            csv_path.write_bytes(b"".join(kept))
            self._file = open(csv_path, "a", newline="")
            self._csv = csv.DictWriter(self._file, fieldnames=METRICS, lineterminator="\n")
        self._file.flush()

    @staticmethod
    def _kept_lines(csv_path: Path, rows: int, last: dict | None) -> list[bytes]:
        """The header and the first `rows` rows of metrics.csv, each checked to be whole. The last
        of them may have been cut short by a crash before it reached the disk: it is written again
        from the checkpoint's copy of that row. Anything after them is dropped."""
        where = f"--resume {csv_path.parent}"
        try:
            lines = csv_path.read_bytes().splitlines(keepends=True)
        except FileNotFoundError:
            raise ConfigError(f"{where}: metrics.csv is missing; this run cannot be continued") from None
        header = ",".join(METRICS).encode() + b"\n"
        if not lines or lines[0] != header:
            raise ConfigError(f"{where}: metrics.csv does not start with this program's header")
        if len(lines) < rows + 1:
            raise ConfigError(f"{where}: metrics.csv has {len(lines) - 1} rows, the checkpoint expects {rows}")
        kept = lines[: rows + 1]
        for i, line in enumerate(kept[1:], start=1):
            whole = line.endswith(b"\n") and len(next(csv.reader([line.decode(errors="replace")]))) == len(METRICS)
            if whole:
                continue
            if i == rows and last:
                buf_ = io.StringIO()
                csv.DictWriter(buf_, fieldnames=METRICS, lineterminator="\n").writerow({k: last.get(k, "") for k in METRICS})
                kept[i] = buf_.getvalue().encode()
            else:
                raise ConfigError(f"{where}: metrics.csv row {i} is damaged; this run cannot be continued")
        return kept

    @classmethod
    def reopen(cls, path: Path, rows: int, last: dict | None = None) -> "RunFolder":
        return cls(path, None, rows, last)

    def row(self, row: dict) -> None:
        try:
            self._csv.writerow({k: row.get(k, "") for k in METRICS})
            self._file.flush()
        except OSError as e:
            raise write_error(self.path / "metrics.csv", e) from None

    def sync(self) -> None:
        """Put the rows written so far on disk (before a checkpoint that counts them)."""
        if self._file.closed:  # finished: finish() synced before closing
            return
        try:
            os.fsync(self._file.fileno())
        except OSError as e:
            raise write_error(self.path / "metrics.csv", e) from None

    def finish(self, summary: dict, params) -> None:
        from flax import serialization  # here: plotting imports this module without JAX

        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            atomic_write(self.path / "params.msgpack", serialization.to_bytes(params))
            atomic_write(self.path / "summary.json", json.dumps(summary, indent=2).encode())
        except OSError as e:
            raise write_error(self.path, e) from None


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


