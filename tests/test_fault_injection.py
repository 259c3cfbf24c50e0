"""Fault injection (fp32, ZeRO 2, dropout on): SIGKILLs at seeded random points - inside checkpoint file
writes (torn files included), between a checkpoint's files and its manifest or `latest`, between steps - and at
seeded random instants of wall time (the test process kills the trainer from outside, wherever it is), each
followed by --resume, must end with the uninterrupted run's losses (atol 1e-6) and weights (atol 1e-6). A disk
that fills during training (a metrics line or a TensorBoard event at a seeded step) must stop the trainer with
one `error:` line after a checkpoint, and --resume must then finish the exact run. Also: two trainers on one
run directory, a deleted lock file, and the stale lock a killed trainer leaves behind.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from fastclap.engine.checkpoint import read_latest
from fastclap.engine.runlock import LOCK_FILE, RunLock, RunLockedError
from fastclap.model import load_exported
from fastclap.train import main
from test_train_helpers import read_metrics, tiny_config, write_config

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_train.py")
STEPS, EVERY, KILLS, SEED = 6, 2, 3, 20261130
INSTANT_KILLS, DISK_TRIALS = 3, 2


def _cfg(run_dir, **run):
    return tiny_config(run_dir, stage=2, steps=STEPS, run=dict({"checkpoint_every": EVERY, "export": True}, **run))


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    summary = main(["--config", write_config(root / "c.json", _cfg(root / "run"))])
    return root / "run", [r["loss"] for r in read_metrics(root / "run")], summary["wall_s"]


def _assert_same_run(run_dir, reference):
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in read_metrics(run_dir)] == pytest.approx(reference[1], abs=1e-6, rel=0)
    a, b = load_exported(str(reference[0])).state_dict(), load_exported(str(run_dir)).state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_exact(tmp_path, reference):
    rng = random.Random(SEED)
    run_dir = tmp_path / "run"
    cfg = write_config(tmp_path / "c.json", _cfg(run_dir))
    # each kind of point once, at a seeded random place: a torn file, a kill as a file is opened, a kill between steps
    plan = [("write", rng.randint(1, 12), "mid"), ("write", rng.randint(1, 12), "before"), ("step", rng.randint(1, 3), "-")]
    rng.shuffle(plan)
    kills, points, fresh, processes = 0, [], True, 0
    while True:
        point = plan[kills] if kills < KILLS else ("write", 0, "-")
        processes += 1
        mode = _start_mode(run_dir, fresh)
        proc = subprocess.run([sys.executable, WORKER, *map(str, point), "--", "--config", cfg, *mode],
                              env=_env(), capture_output=True, text=True, timeout=300)
        fresh = proc.returncode != -signal.SIGKILL
        if not fresh:
            kills += 1
            points.append(point)
            continue
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        if kills >= KILLS:
            break
        _assert_same_run(run_dir, reference)  # this process finished before its kill point: still exact
    _assert_same_run(run_dir, reference)
    print(f"SIGKILL then --resume: {kills} of {KILLS} kills at {points} ({processes} trainer processes) "
          "resumed to the exact losses and weights")


def _start_mode(run_dir, fresh):
    """--resume when a checkpoint was published; start over after a finished run or one killed before its first."""
    return ["--resume"] if read_latest(str(run_dir)) and not fresh else ["--set", "fastclap.run.overwrite=true"]


@pytest.mark.slow
def test_sigkill_at_random_instants_then_resume_is_exact(tmp_path, reference):
    """The test process SIGKILLs the trainer at a seeded random instant after it took the run lock (its imports
    done), uniform over the uninterrupted run's duration: anywhere in a step, a checkpoint, a metrics append."""
    rng = random.Random(SEED + 1)
    run_dir = tmp_path / "run"
    cfg = write_config(tmp_path / "c.json", _cfg(run_dir, tensorboard=True))
    span = max(1.0, reference[2])
    kills, instants, fresh, processes = 0, [], True, 0
    while True:
        processes += 1
        (run_dir / LOCK_FILE).unlink(missing_ok=True)  # a killed trainer's: its reappearance marks the start
        proc = subprocess.Popen([sys.executable, WORKER, "write", "0", "-", "--", "--config", cfg,
                                 *_start_mode(run_dir, fresh)], env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        if kills < INSTANT_KILLS:
            deadline = time.time() + 120
            while not (run_dir / LOCK_FILE).exists() and proc.poll() is None:  # the trainer has started
                assert time.time() < deadline, "the trainer did not start within 120 s"
                time.sleep(0.02)
            delay = rng.uniform(0.0, span)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        out = proc.communicate(timeout=300)[0].decode()
        fresh = proc.returncode != -signal.SIGKILL
        if not fresh:
            kills += 1
            instants.append(round(delay, 2))
            continue
        assert proc.returncode == 0, out[-3000:]
        if kills >= INSTANT_KILLS:
            break
        _assert_same_run(run_dir, reference)  # it finished before the instant: still exact
    _assert_same_run(run_dir, reference)
    print(f"SIGKILL at random instants: {kills} of {INSTANT_KILLS} kills at {instants} s into runs of "
          f"{span:.1f} s ({processes} trainer processes) resumed to the exact losses and weights")


def test_full_disk_during_training_stops_cleanly_then_resume_is_exact(tmp_path, reference):
    """The disk fills at a seeded record appended during training (metrics.jsonl line or TensorBoard event,
    from then on every append fails): exit status 2 with one `error:` line naming the file and the bytes, a
    checkpoint of that step, nothing torn; after space is back --resume finishes the exact run."""
    rng = random.Random(SEED + 2)
    for trial in range(DISK_TRIALS):
        run_dir = tmp_path / f"run{trial}"
        cfg = write_config(tmp_path / f"c{trial}.json", _cfg(run_dir, tensorboard=True))
        nth = rng.randint(2, 2 * STEPS)  # records: the TensorBoard header, then a line and an event per step
        proc = subprocess.run([sys.executable, WORKER, "disk", str(nth), "-", "--", "--config", cfg], env=_env(),
                              capture_output=True, text=True, timeout=300)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert len(errors) == 1 and re.match(rf"error: (\[Errno 28\] )?cannot write {re.escape(str(run_dir))}/",
                                             errors[0]), errors
        assert "no space left on device; the record needs" in errors[0] and "Traceback" not in proc.stderr
        assert "training stopped after checkpoint step_" in errors[0]
        leftovers = [f for _, _, files in os.walk(run_dir) for f in files if f.endswith(".tmp")]
        assert leftovers == []
        summary = main(["--config", cfg, "--resume"])
        assert summary["start_step"] >= 1
        _assert_same_run(run_dir, reference)
        print(f"disk full from record {nth}: stopped with one error line after checkpoint step "
              f"{summary['start_step']}; resumed to the exact losses and weights")


def test_two_trainers_on_one_run_directory_and_a_stale_lock(tmp_path, reference):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, WORKER, "write", "0", "-", "--", "--config",
                              write_config(tmp_path / "a.json", _cfg(run_dir, pause_after_checkpoint=120.0))],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while read_latest(str(run_dir)) is None:  # the first trainer now sleeps 120 s after its checkpoint
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.1)
    before = (run_dir / "metrics.jsonl").read_bytes()
    second = write_config(tmp_path / "b.json", _cfg(run_dir, overwrite=True))
    try:
        for extra in ([], ["--resume"]):
            with pytest.raises(RunLockedError, match=rf"in use by another trainer \(pid {first.pid}, lock "):
                main(["--config", second, *extra])
        (run_dir / LOCK_FILE).unlink()  # the lock is held on the directory: deleting the file changes nothing
        with pytest.raises(RunLockedError, match=rf"in use by another trainer \(pid unknown: .*{LOCK_FILE} was deleted"):
            main(["--config", second])  # overwrite: true, yet nothing of the first run is deleted
        assert (run_dir / "metrics.jsonl").read_bytes() == before  # the second trainer touched nothing
        assert read_latest(str(run_dir)) == "step_00000002"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not (run_dir / LOCK_FILE).exists()
    summary = main(["--config", write_config(tmp_path / "c.json", _cfg(run_dir)), "--resume"])
    assert summary["start_step"] == 2
    _assert_same_run(run_dir, reference)
    print("two trainers: the second stopped at once naming the first's pid; a stale lock did not block --resume")


def test_lock_is_exclusive_and_released(tmp_path):
    with RunLock(str(tmp_path)):
        with pytest.raises(RunLockedError, match=rf"pid {os.getpid()}"):
            RunLock(str(tmp_path)).acquire()
        RunLock(str(tmp_path), rank=1).acquire()  # other ranks do not take it
        os.remove(tmp_path / LOCK_FILE)  # a deleted lock file does not free the directory
        with pytest.raises(RunLockedError, match=rf"pid unknown: {tmp_path / LOCK_FILE} was deleted"):
            RunLock(str(tmp_path)).acquire()
    (tmp_path / LOCK_FILE).write_text("12345\n")  # a stale file of a killed trainer does not block
    with RunLock(str(tmp_path)):
        pass
    with RunLock(str(tmp_path)):  # released on exit
        pass
