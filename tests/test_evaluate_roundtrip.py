"""Checkpoint round trip: train a tiny model for 2 steps with the engine (ZeRO 2), load its export, evaluate
with the CLI, and check the report against an independent recomputation; bad input gives clear errors."""
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("fastclap.data")
pytest.importorskip("fastclap.model")
pytest.importorskip("opensmile")

from data_helpers import prepared_sample  # noqa: E402
from fastclap.evaluate import main as evaluate_main  # noqa: E402
from fastclap.evaluation.runner import evaluate_model, load_model  # noqa: E402
from fastclap.train import main as train_main  # noqa: E402
from test_train_helpers import tiny_config, write_config  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run_dir, prepared corpus) of a 2-step ZeRO-2 run on the embedded sample."""
    prep = prepared_sample()[0]
    tmp = tmp_path_factory.mktemp("run")
    run_dir = tmp / "run"
    cfg = tiny_config(run_dir, stage=2, steps=2, micro=32,
                      data={"corpora": [{"corpus": "sample", "prepared_dir": str(prep.out_dir)}],
                            "crop_seconds": 1.0, "repeats": 1})
    train_main(["--config", write_config(tmp / "c.json", cfg)])
    return str(run_dir), prep


def _audio_by_hand(model, prep, idx):
    """Audio embeddings clip by clip (one (1, D) tensor per clip)."""
    audio = []
    with torch.no_grad():
        for i in idx:
            lld = torch.from_numpy(np.asarray(prep.lld_frames(int(i)), dtype=np.float32))[None]
            audio.append(model.encode_audio({"lld": lld, "lld_mask": torch.ones(lld.shape[:2], dtype=torch.long)}))
    return audio


def _recall_by_hand(model, prep, split, ks=(1, 5, 10)):
    """Recall@k with loops: a query is a hit at k when fewer than k wrong answers score >= its best right one."""
    idx = prep.split_indices(split)
    captions = [prep.captions[i] for i in idx]
    texts = sorted(set(captions))
    audio = [a[0].tolist() for a in _audio_by_hand(model, prep, idx)]
    with torch.no_grad():
        text = [model.encode_text([t])[0].tolist() for t in texts]
    sim = [[sum(p * q for p, q in zip(a, t)) for t in text] for a in audio]
    a2t_rank = [sum(sim[i][j] >= sim[i][texts.index(c)] for j in range(len(texts)) if texts[j] != c)
                for i, c in enumerate(captions)]
    t2a_rank = []
    for j, t in enumerate(texts):
        best = max(sim[i][j] for i in range(len(audio)) if captions[i] == t)
        t2a_rank.append(sum(sim[i][j] >= best for i in range(len(audio)) if captions[i] != t))
    hits = lambda ranks, k: sum(r < k for r in ranks) / len(ranks)
    return ({str(k): hits(a2t_rank, k) for k in ks}, {str(k): hits(t2a_rank, k) for k in ks})


def _uar_war_by_hand(model, prep, split, template):
    """Independent recomputation: embed clip by clip, prompt by prompt, recall per class with loops."""
    idx = prep.split_indices(split)
    labels = [prep.rows[i].emotion for i in idx]
    classes = sorted(set(labels))
    with torch.no_grad():
        text = torch.cat([model.encode_text([template.format(label=c)]) for c in classes])
    audio = _audio_by_hand(model, prep, idx)
    pred = [classes[int(torch.argmax(a @ text.T))] for a in audio]
    recalls = [np.mean([p == c for p, t in zip(pred, labels) if t == c]) for c in classes]
    return float(np.mean(recalls)), float(np.mean([p == t for p, t in zip(pred, labels)])), classes


def test_cli_round_trip_matches_independent_computation(trained, tmp_path, capsys):
    run_dir, prep = trained
    out = tmp_path / "eval"
    rc = evaluate_main(["--checkpoint", run_dir, "--prepared", str(prep.out_dir), "--split", "test",
                        "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert {"zero_shot", "retrieval", "prompts", "dataset", "versions", "date", "checkpoint"} <= set(report)
    assert report["dataset"]["normalisation"].startswith("run")
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG" and "| UAR |" in (out / "summary.md").read_text()
    uar, war, classes = _uar_war_by_hand(load_model(run_dir), prep, "test", "emotion is {label}")  # default
    zs = report["zero_shot"]
    assert zs["classes"] == classes and zs["chance_uar"] == pytest.approx(1 / len(classes))
    assert zs["uar"] == pytest.approx(uar) and zs["war"] == pytest.approx(war)
    r = report["retrieval"]
    a2t, t2a = _recall_by_hand(load_model(run_dir), prep, "test")
    assert r["n_audio"] == zs["n"] and r["n_text"] == len(set(prep.captions[i] for i in prep.split_indices("test")))
    assert r["audio_to_text"] == pytest.approx(a2t) and r["text_to_audio"] == pytest.approx(t2a)
    assert 0 < a2t["1"] < a2t["10"] or 0 < t2a["1"] < t2a["10"]  # not a degenerate all-or-nothing case


def test_prompt_choice_on_valid_matches_independent_uar(trained, tmp_path, capsys):
    from fastclap.evaluation.runner import choose_templates

    run_dir, prep = trained
    model = load_model(run_dir)
    cands = {"caption": ["emotion is {label}"], "odd": ["{label}"], "sentence": ["this person is feeling {label}."]}
    choice = choose_templates(model, prep, cands, "valid")
    want = {name: _uar_war_by_hand(model, prep, "valid", t[0])[0] for name, t in cands.items()}
    assert choice["uar"] == pytest.approx(want) and choice["split"] == "valid"
    best = max(want.values())
    assert choice["chosen"] == next(n for n in cands if want[n] == best)  # ties: the earlier name
    out = tmp_path / "eval"
    rc = evaluate_main(["--checkpoint", run_dir, "--prepared", str(prep.out_dir), "--choose-prompts",
                        "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["prompt_choice"]["split"] == "valid"
    assert report["prompts"]["templates"] == report["prompt_choice"]["templates"]


def test_template_ensemble_and_shared_label_space(trained):
    run_dir, prep = trained
    model = load_model(run_dir)
    res = evaluate_model(model, prep, "test", templates=["{label}", "a {label} voice"], label_space="shared",
                         shared_only=True, progress=False)
    assert res["prompts"]["classes"] == sorted(res["prompts"]["classes"])
    assert set(res["prompts"]["classes"]) <= {"anger", "happiness", "sadness", "neutral"}
    assert res["dataset"]["dropped"] == sum(prep.rows[i].emotion in ("calm", "fearful")
                                            for i in prep.split_indices("test"))


def test_bad_inputs_name_the_problem(trained, tmp_path, capsys):
    run_dir, prep = trained
    rc = evaluate_main(["--checkpoint", str(tmp_path / "nope"), "--prepared", str(prep.out_dir)])
    assert rc == 2 and "nope: no such run directory" in capsys.readouterr().err
    os.makedirs(tmp_path / "empty_run")
    rc = evaluate_main(["--checkpoint", str(tmp_path / "empty_run"), "--prepared", str(prep.out_dir)])
    assert rc == 2 and "no exported model" in capsys.readouterr().err
    rc = evaluate_main(["--checkpoint", run_dir, "--prepared", str(tmp_path / "missing_data")])
    assert rc == 2 and "missing_data: no such folder" in capsys.readouterr().err
    # a test label without a prompt word: 'calm' has no shared class
    rc = evaluate_main(["--checkpoint", run_dir, "--prepared", str(prep.out_dir), "--label-space", "shared",
                        "--out", str(tmp_path / "o")])
    assert rc == 2 and "'calm' has no shared" in capsys.readouterr().err
    rc = evaluate_main(["--checkpoint", run_dir, "--prepared", str(prep.out_dir), "--label-word", "boredom=bored",
                        "--out", str(tmp_path / "o")])
    assert rc == 2 and "['boredom']" in capsys.readouterr().err
    # an empty split
    rows = [dataclasses.replace(r, split="train") for r in prep.rows]
    with pytest.raises(ValueError, match="'test' .* is empty"):
        evaluate_model(load_model(run_dir), dataclasses.replace(prep, rows=rows), "test", progress=False)


def test_dataset_the_run_trained_on_reuses_its_prepared_data(trained, tmp_path, capsys, caplog):
    from fastclap.evaluation.runner import run_prepared_dir

    run_dir, prep = trained
    out = tmp_path / "eval"
    rc = evaluate_main(["--checkpoint", run_dir, "--dataset", "sample", "--split", "test", "--out", str(out),
                        "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"using the run's prepared sample data: {prep.out_dir}" in err
    assert not (out / "prepared").exists()  # nothing prepared again
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["prepared_dir"] == str(prep.out_dir)
    # the corpus words of one shared class are scored apart in the dataset space: the evaluator says so
    assert any("anger / angry" in r.getMessage() and "--label-space shared --shared-only" in r.getMessage()
               for r in caplog.records)
    # another corpus, another root, or a run without config.json: not reused
    assert run_prepared_dir(run_dir, "sample") == str(prep.out_dir)
    assert run_prepared_dir(run_dir, "sample", root=str(tmp_path)) is None
    assert run_prepared_dir(run_dir, "emodb") is None
    assert run_prepared_dir(str(tmp_path), "sample") is None


def test_shared_label_space_error_names_the_flag_to_add(trained, tmp_path, capsys):
    run_dir, prep = trained
    rc = evaluate_main(["--checkpoint", run_dir, "--prepared", str(prep.out_dir), "--label-space", "shared",
                        "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "add --shared-only" in err[0] and "--label-space dataset" in err[0]
    assert "label_space=" not in err[0]
    rc = evaluate_main(["--checkpoint", run_dir, "--prepared", str(prep.out_dir), "--label-space", "shared",
                        "--shared-only", "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert set(report["zero_shot"]["classes"]) <= {"anger", "happiness", "sadness", "neutral"}


def test_on_bad_audio_skip_counts_logs_and_reports_the_file(trained, tmp_path, capsys):
    import shutil

    from fastclap.data.cli import SAMPLE_DIR

    run_dir, _ = trained
    root = tmp_path / "corpus"
    shutil.copytree(SAMPLE_DIR, root)
    (root / "notes.flac").write_bytes(b"a text file saved as .flac\n" * 40)
    with open(root / "manifest.csv", "a", encoding="utf-8") as f:
        f.write("notes.flac,ravdess,ravdess_01,en,male,happy,,,16000,1,,\n")
    common = ["--checkpoint", run_dir, "--dataset", "manifest", "--root", str(root), "--no-progress"]
    rc = evaluate_main(common + ["--out", str(tmp_path / "strict")])
    err = capsys.readouterr().err
    assert rc == 2 and "notes.flac: cannot decode audio" in err  # default: the first bad file stops
    rc = evaluate_main(common + ["--on-bad-audio", "skip", "--out", str(tmp_path / "lenient")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "skipped 1 unusable file(s)" in err and "notes.flac: cannot decode audio" in err
    report = json.loads((tmp_path / "lenient" / "report.json").read_text())
    assert [s["path"] for s in report["dataset"]["skipped_files"]] == ["notes.flac"]


@pytest.mark.parametrize("victim", ["summary.md", "confusion.png"])
def test_reports_on_a_full_disk_name_the_file(trained, tmp_path, capsys, monkeypatch, victim):
    from fault_train import fill_disk_under

    run_dir, prep = trained
    out = tmp_path / "o"
    fill_disk_under(monkeypatch, out, budget=10, name_contains=victim)
    rc = evaluate_main(["--checkpoint", run_dir, "--prepared", str(prep.out_dir), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot write {out / victim}: no space left on device; the file needs about" in err, err
    assert [f for f in os.listdir(out) if "tmp" in f] == []


def test_fastclap_evaluate_command_is_quiet(trained, tmp_path):
    """As quiet as `fastclap train`: no DeepSpeed accelerator detection line (DeepSpeed is imported for the
    allow-list of safe loading), no INFO lines, no transformers weight-loading bar; the report is printed."""
    import subprocess
    import sys

    run_dir, prep = trained
    own = ("DS_ACCELERATOR", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")  # set by in-process runs
    env = {k: v for k, v in os.environ.items() if k not in own}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-m", "fastclap", "evaluate", "--checkpoint", run_dir, "--prepared",
                           str(prep.out_dir), "--out", str(tmp_path / "eval"), "--no-progress"],
                          cwd=repo, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| UAR |" in proc.stdout
    noise = [line for line in (proc.stdout + proc.stderr).splitlines()
             if "accelerator" in line or "[INFO]" in line or "Loading weights" in line]
    assert not noise, noise
