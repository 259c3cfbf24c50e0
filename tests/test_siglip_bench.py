"""benchmarks.siglip: one tiny configuration per CPU provider measured in-process gives a complete row, every
provider computes the same loss, and the rows are written to JSONL / CSV and plotted."""
import json
import sys

import pytest

from peer_losses import open_clip_loss

from benchmarks import siglip as bench  # (tests/conftest.py makes the benchmarks folder importable)


def test_providers_agree_and_rows_are_written(tmp_path):
    open_clip_loss()  # skips without open-clip-torch
    x, y, s, b = bench._inputs(48, 8, "cpu", seed=0)
    values = {p: bench.make_loss_fn(p, x, y, s, b, chunk=16)().item()
              for p in ("open_clip", "open_clip_chunks", "fastclap_chunked")}
    assert values["open_clip_chunks"] == pytest.approx(values["open_clip"], rel=1e-5)
    assert values["fastclap_chunked"] == pytest.approx(values["open_clip"], rel=1e-5)
    rows = [bench.measure_one(dict(provider=p, batch=batch, dim=8, chunk=16, device="cpu", repeats=1,
                                   mem_cap_bytes=2**30, **bench.ROW_CONSTANTS))
            for batch in (48, 64) for p in bench.PROVIDERS]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "skipped"] * 2  # no CUDA here for the Triton rows
    assert all(r["time_ms"] > 0 and r["peak_bytes"] is not None for r in rows if r["status"] == "ok")
    capped = bench.measure_one(dict(provider="open_clip", batch=48, dim=8, chunk=16, device="cpu", repeats=1,
                                    mem_cap_bytes=10))
    assert capped["status"] == "skipped" and "memory cap" in capped["reason"]
    bench.write_results(rows, tmp_path / "r")
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 8
    assert json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])["provider"] == "open_clip"
    assert (tmp_path / "r.csv").read_text().startswith("provider,batch")
    from benchmarks.plot import plot_file

    (png,) = plot_file(tmp_path / "r.jsonl")  # the figure is drawn from the data file
    assert png.stat().st_size > 0


def test_bad_arguments_exit_2(capsys):
    assert bench.main(["--batches", "0"]) == 2
    assert "error:" in capsys.readouterr().err
