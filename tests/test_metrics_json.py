"""metrics.jsonl holds strict JSON: non-finite values become null and are listed under "nonfinite"."""
import json

import pytest

from fastclap.engine.metrics import MetricsWriter


def _strict(line):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(line, parse_constant=refuse)


def test_non_finite_metrics_are_written_as_valid_json(tmp_path):
    w = MetricsWriter(str(tmp_path), tensorboard=False)
    w.write({"step": 1, "loss": float("nan"), "lr": float("inf"), "grad": -float("inf"), "pairs_per_s": 12.5})
    w.write({"step": 2, "loss": 1.25, "lr": 1e-3})
    w.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert _strict(lines[0]) == {"step": 1, "loss": None, "lr": None, "grad": None, "pairs_per_s": 12.5,
                                 "nonfinite": ["loss", "lr", "grad"]}
    assert _strict(lines[1]) == {"step": 2, "loss": 1.25, "lr": 1e-3}
    w2 = MetricsWriter(str(tmp_path), tensorboard=False)
    w2.truncate_after(1)
    assert [_strict(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]


def test_strict_parser_refuses_bare_nan():
    with pytest.raises(ValueError, match="not JSON: NaN"):
        _strict('{"loss": NaN}')


def test_tensorboard_events_read_back_with_tensorboard(tmp_path):
    """The synchronous event writer's file is read by TensorBoard's own EventAccumulator."""
    import random

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rng = random.Random(7)
    recs = [{"step": s, "loss": rng.uniform(0, 5), "lr": rng.uniform(0, 1e-3), "eval.uar": rng.random()}
            for s in (1, 2, 5)]
    w = MetricsWriter(str(tmp_path), tensorboard=True)
    for r in recs:
        w.write(r)
    ea = EventAccumulator(str(tmp_path / "tensorboard"))
    ea.Reload()
    assert sorted(ea.Tags()["scalars"]) == ["eval/uar", "loss", "lr"]
    for tag, key in (("loss", "loss"), ("lr", "lr"), ("eval/uar", "eval.uar")):
        got = [(e.step, e.value) for e in ea.Scalars(tag)]
        assert [s for s, _ in got] == [1, 2, 5]
        assert [v for _, v in got] == pytest.approx([r[key] for r in recs], rel=1e-6)  # stored as float32
