"""Recorded paths: absolute paths in the checkout or beside it become relative to the working directory (the
repository root), so a committed command reruns elsewhere; other paths stay as given."""
import os

from fastclap.paths import portable_command, portable_path


def test_paths_in_and_beside_the_checkout_become_relative(tmp_path):
    repo, shared = tmp_path / "work" / "repo", tmp_path / "work" / "shared" / "data"
    repo.mkdir(parents=True)
    shared.mkdir(parents=True)
    cwd = str(repo)
    assert portable_path(str(shared), cwd) == os.path.join("..", "shared", "data")
    assert portable_path(str(repo / "runs" / "x"), cwd) == os.path.join("runs", "x")
    assert portable_path(str(repo), cwd) == "."
    assert portable_path(str(tmp_path / "elsewhere" / "y"), cwd) == str(tmp_path / "elsewhere" / "y")
    assert portable_path("runs/rel", cwd) == "runs/rel" and portable_path(None, cwd) is None
    assert portable_path("/work2/data", "/work") == "/work2/data"  # below the root: nothing is "beside" it


def test_command_arguments_are_recorded_portably(tmp_path):
    repo = tmp_path / "w" / "repo"
    repo.mkdir(parents=True)
    data, outside = str(tmp_path / "w" / "shared" / "data"), str(tmp_path / "o")
    argv = ["--data-root", data, f"--work-dir={repo}/runs/exp", "--out", outside, "--steps", "40", "--note=a b"]
    cmd = portable_command("python -m fastclap.experiment", argv, str(repo))
    assert cmd == (f"python -m fastclap.experiment --data-root ../shared/data --work-dir=runs/exp --out {outside} "
                   "--steps 40 '--note=a b'")
