"""Smoke run of the Rank-N-Contrast benchmark: rows for every provider, the loop form's cap recorded, a PNG."""
import json

from benchmarks.rnc import loop_bytes, main


def test_rnc_benchmark_smoke(tmp_path, capsys):
    out = tmp_path / "rnc.jsonl"
    cap_gib = loop_bytes(16) / 2**30 * 1.5  # B=16 fits, B=32 (8x the memory) is over the cap
    assert main(["--batches", "16", "32", "--dim", "8", "--repeats", "1", "--out", str(out),
                 "--loop-mem-limit-gib", str(cap_gib)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    status = {(r["provider"], r["batch"]): r["status"] for r in rows}
    assert status == {("loop", 16): "ok", ("loop", 32): "skipped", ("chunked", 16): "ok", ("chunked", 32): "ok",
                      ("triton", 16): "skipped", ("triton", 32): "skipped"}
    for r in rows:
        if r["status"] == "ok":
            assert r["time_ms"] > 0 and r["peak_bytes"] is not None and r["times_ms"]
        else:
            assert r["reason"]
    assert "autograd memory" in next(r["reason"] for r in rows if r["provider"] == "loop" and r["batch"] == 32)
    assert (tmp_path / "rnc.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["--batches", "0"]) == 2 and "error:" in capsys.readouterr().err
