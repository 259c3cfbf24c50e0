"""Ordinal valence / arousal retrieval: Kendall's tau-b and Spearman's rho (SciPy) against hand-written loops,
and in the CLI report of a trained model."""
import itertools
import json
import math

import numpy as np
import pytest
import torch

from fastclap.evaluation.ordinal import LEVEL_PROMPTS, ordinal_markdown, ordinal_retrieval


def tau_b_by_hand(a, b):
    """Kendall's tau-b by counting pairs (ties in a or b corrected), independent of SciPy."""
    conc = disc = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif da == db:
            conc += 1
        else:
            disc += 1
    return (conc - disc) / math.sqrt((conc + disc + ties_a) * (conc + disc + ties_b))


def spearman_by_hand(a, b):
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for t in range(i, j + 1):
                r[order[t]] = (i + j) / 2
            i = j + 1
        return np.array(r)
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def _toy(n=40, seed=0):
    """Clips on a 2-D circle whose angle follows arousal, prompts on the same circle by level; random valence."""
    g = np.random.default_rng(seed)
    coords = np.stack([g.choice([-0.6, 0.0, 0.8], n), g.choice([-0.6, -0.27, 0.0, 0.59], n), np.zeros(n)], 1)
    angle = coords[:, 1] + 0.3 * g.normal(size=n)
    audio = torch.tensor(np.stack([np.cos(angle), np.sin(angle)], 1), dtype=torch.float32)
    level_angle = np.linspace(-0.8, 0.8, 5)

    def encode(texts):
        k = [LEVEL_PROMPTS["arousal"].index(t) if t in LEVEL_PROMPTS["arousal"] else LEVEL_PROMPTS["valence"].index(t)
             for t in texts]
        return torch.tensor(np.stack([np.cos(level_angle[k]), np.sin(level_angle[k])], 1), dtype=torch.float32)
    return audio, torch.tensor(coords, dtype=torch.float32), encode


def test_scores_match_hand_counts():
    audio, coords, encode = _toy()
    got = ordinal_retrieval(audio, coords, encode, top_k=4)
    sim = (audio @ encode(LEVEL_PROMPTS["arousal"]).T).numpy()
    best = sim.argmax(1)
    truth = coords[:, 1].double().numpy()
    a2t = got["arousal"]["audio_to_text"]
    assert a2t["kendall_tau"] == pytest.approx(tau_b_by_hand(best, truth), abs=1e-12)
    assert a2t["spearman_rho"] == pytest.approx(spearman_by_hand(best, truth), abs=1e-9)
    assert a2t["kendall_tau"] > 0.5  # the toy embedding orders arousal
    levels, values = [], []
    for k in range(5):
        for i in np.argsort(-sim[:, k], kind="stable")[:4]:
            levels.append(k)
            values.append(truth[i])
    t2a = got["arousal"]["text_to_audio"]
    assert t2a["n"] == 20 and t2a["kendall_tau"] == pytest.approx(tau_b_by_hand(levels, values), abs=1e-12)
    assert abs(got["valence"]["audio_to_text"]["kendall_tau"]) < 0.4  # valence is unrelated to the angle
    assert "| arousal | audio to text |" in ordinal_markdown(got)


def test_reversed_prompts_flip_the_sign_and_nan_rows_are_left_out():
    audio, coords, encode = _toy()
    coords[0] = float("nan")
    got = ordinal_retrieval(audio, coords, encode)
    rev = ordinal_retrieval(audio, coords, encode, prompts={"arousal": LEVEL_PROMPTS["arousal"][::-1]})
    assert got["n_clips"] == 39 and got["n_without_coordinates"] == 1
    assert rev["arousal"]["audio_to_text"]["kendall_tau"] == pytest.approx(-got["arousal"]["audio_to_text"]["kendall_tau"])


def test_constant_truth_gives_none_and_errors():
    audio, coords, encode = _toy()
    coords[:, 0] = 0.5
    assert ordinal_retrieval(audio, coords, encode)["valence"]["audio_to_text"]["kendall_tau"] is None
    with pytest.raises(ValueError, match="no clip has valence/arousal"):
        ordinal_retrieval(audio, torch.full_like(coords, float("nan")), encode)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        ordinal_retrieval(audio, coords, encode, top_k=0)


def test_experiment_summarises_ordinal_scores():
    from fastclap.experiment import ORDINAL_KEYS, ordinal_summary

    def run(tau):
        return {"ordinal": {d: {w: {"kendall_tau": tau + i} for w in ("audio_to_text", "text_to_audio")}
                            for i, d in enumerate(("valence", "arousal"))}}
    got = ordinal_summary([run(0.1), run(0.3)])
    assert set(got) == {f"{d}/{w}" for d, w, _ in ORDINAL_KEYS}
    assert got["arousal/text_to_audio"][0] == pytest.approx(1.2) and got["valence/audio_to_text"][1] == pytest.approx(
        math.sqrt(0.02))
    assert ordinal_summary([run(0.1), {"ordinal": None}]) is None  # a run without the scores


pytest.importorskip("opensmile")
from test_evaluate_roundtrip import trained  # noqa: E402,F401  (module fixture: a 2-step run on the sample)


def test_cli_report_has_ordinal_scores(trained, tmp_path, capsys):
    from fastclap.evaluate import main as evaluate_main
    from fastclap.evaluation.runner import embed_split, load_model

    run_dir, prep = trained
    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", run_dir, "--prepared", str(prep.out_dir), "--split", "test", "--out",
                          str(out), "--no-progress", "--ordinal-top-k", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    ordinal = report["ordinal"]
    assert ordinal["top_k"] == 3 and ordinal["n_without_coordinates"] == 0
    assert ordinal["n_clips"] == report["zero_shot"]["n"]
    emb = embed_split(load_model(run_dir), prep, "test", progress=False)
    assert torch.isfinite(emb["va"]).all()
    model = load_model(run_dir)
    with torch.no_grad():
        prompts = torch.cat([model.encode_text([t]) for t in LEVEL_PROMPTS["valence"]])
    best = (emb["audio_features"] @ prompts.T).argmax(1).numpy()
    want = tau_b_by_hand(best, emb["va"][:, 0].double().numpy()) if len(set(best)) > 1 else None
    got = ordinal["valence"]["audio_to_text"]["kendall_tau"]
    assert (got is None and want is None) or got == pytest.approx(want, abs=1e-6)
    assert "Kendall τ" in (out / "summary.md").read_text()
    assert "error" not in capsys.readouterr().err
    assert evaluate_main(["--checkpoint", run_dir, "--prepared", str(prep.out_dir), "--ordinal-top-k", "0"]) == 2
    assert "error: --ordinal-top-k must be >= 1" in capsys.readouterr().err
