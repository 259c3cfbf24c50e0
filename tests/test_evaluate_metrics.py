"""Zero-shot metrics, retrieval recall@k, prompts and reports against hand-computed examples (CPU, fp32/fp64)."""
import json
import math

import pytest
import torch

from fastclap.evaluation import (
    ClassPrompts, classification_metrics, map_label, markdown_summary, parse_label_words, plot_confusion,
    recall_at_k, retrieval_metrics, write_json, zero_shot_predict,
)


def test_uar_war_confusion_hand_computed():
    # true a a a b b c ; pred a a b b c c -> recall a 2/3, b 1/2, c 1 ; accuracy 4/6
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert m["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["war"] == pytest.approx(4 / 6)
    assert m["chance_uar"] == pytest.approx(1 / 3)
    assert m["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 1.0})
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["support"] == {"a": 3, "b": 2, "c": 1} and m["n"] == 6


def test_uar_skips_classes_without_clips_but_chance_counts_all_prompts():
    # class d is prompted (and predicted once) but has no clip: no recall, chance 1/4
    m = classification_metrics([0, 0, 1, 2], [0, 3, 1, 0], ["a", "b", "c", "d"])
    assert m["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 0.0, "d": None}
    assert m["uar"] == pytest.approx(0.5)
    assert m["war"] == pytest.approx(0.5)
    assert m["chance_uar"] == pytest.approx(0.25)
    assert m["confusion"][0] == [1, 0, 0, 1] and m["confusion"][3] == [0, 0, 0, 0]


def test_uar_differs_from_war_on_imbalanced_data():
    # 9 clips of a, 1 of b, everything predicted a: WAR 0.9, UAR 0.5
    m = classification_metrics([0] * 9 + [1], [0] * 10, ["a", "b"])
    assert m["war"] == pytest.approx(0.9) and m["uar"] == pytest.approx(0.5)


@pytest.mark.parametrize("y_true,y_pred,match", [
    ([], [], "empty"), ([0, 1], [0], "entries"), ([0, 3], [0, 1], "y_true"), ([0, 1], [0, -1], "y_pred"),
])
def test_classification_metrics_bad_input(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y_true, y_pred, ["a", "b", "c"])


def test_zero_shot_predict_hand_example():
    audio = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.0, 1.0], [-1.0, 0.2]]), dim=1)
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert zero_shot_predict(audio, classes).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="embedding sizes"):
        zero_shot_predict(audio, torch.ones(3, 3))
    with pytest.raises(ValueError, match="no classes"):
        zero_shot_predict(audio, torch.ones(0, 2))


def test_recall_at_k_hand_made_matrix():
    sim = torch.tensor([
        [0.9, 0.1, 0.2, 0.3],   # relevant item 0 ranked first            -> rank 0
        [0.8, 0.1, 0.2, 0.6],   # relevant item 3 behind item 0 only      -> rank 1
        [0.5, 0.4, 0.3, 0.2],   # relevant items 2 and 3: best is 2       -> rank 2
    ])
    rel = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]], dtype=torch.bool)
    r = recall_at_k(sim, rel, ks=(1, 2, 3, 10))
    assert r == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(1.0), 10: pytest.approx(1.0)}


def test_recall_at_k_ties_count_against_the_query():
    sim = torch.tensor([[0.5, 0.5, 0.1]])
    rel = torch.tensor([[False, True, False]])
    assert recall_at_k(sim, rel, ks=(1, 2)) == {1: 0.0, 2: 1.0}


@pytest.mark.parametrize("q,m", [(7, 13), (20, 5)])
def test_recall_at_k_matches_sorting_reference(q, m):
    g = torch.Generator().manual_seed(q * 100 + m)
    sim = torch.randn(q, m, generator=g)
    rel = torch.rand(q, m, generator=g) < 0.2
    rel[torch.arange(q), torch.randint(0, m, (q,), generator=g)] = True
    ks = (1, 3, 5, 10)
    got = recall_at_k(sim, rel, ks)
    for k in ks:  # independent reference: sort each row and look for a relevant item in the first k
        hits = [bool(rel[i, torch.argsort(sim[i], descending=True)[:k]].any()) for i in range(q)]
        assert got[k] == pytest.approx(sum(hits) / q)


def test_recall_at_k_bad_input():
    with pytest.raises(ValueError, match="no relevant item"):
        recall_at_k(torch.zeros(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool))
    with pytest.raises(ValueError, match="same 2-D shape"):
        recall_at_k(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool), ks=(0,))


def test_retrieval_metrics_with_repeated_captions():
    # clips 0 and 1 share caption "x"; clip 2 has "y". audio 1 points at "y" (a miss at 1), all others correct.
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    texts = ["x", "y"]
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    r = retrieval_metrics(audio, ["x", "x", "y"], text, texts, ks=(1, 2))
    assert r["audio_to_text"] == {1: pytest.approx(2 / 3), 2: 1.0}
    # text "x": clip 0 is its best audio -> hit; text "y": clips 1, 2 tie, 2 is relevant, 1 is not -> rank 1
    assert r["text_to_audio"] == {1: pytest.approx(0.5), 2: 1.0}
    with pytest.raises(ValueError, match="not among the texts"):
        retrieval_metrics(audio, ["x", "x", "z"], text, texts)


def test_prompts_average_templates_and_renormalise():
    vecs = {"happy a": [1.0, 0.0], "happy b": [0.0, 1.0], "sad a": [0.6, 0.8], "sad b": [0.6, 0.8]}
    p = ClassPrompts.build(["happy", "sad"], ["{label} a", "{label} b"])
    assert p.texts() == [["happy a", "happy b"], ["sad a", "sad b"]]
    emb = p.encode(lambda texts: torch.tensor([vecs[t] for t in texts]))
    assert torch.allclose(emb, torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)], [0.6, 0.8]]))


def test_prompts_label_words_and_errors():
    p = ClassPrompts.build(["anger", "sadness"], label_words={"anger": "angry"})
    assert p.words == ("angry", "sadness")
    assert p.texts()[0] == ["emotion is angry"]  # the default: the caption phrase
    with pytest.raises(ValueError, match="'calm' has no prompt word"):
        p.index("calm")
    with pytest.raises(ValueError, match="not classes"):
        ClassPrompts.build(["anger"], label_words={"boredom": "bored"})
    with pytest.raises(ValueError, match="no classes"):
        ClassPrompts.build([])
    with pytest.raises(ValueError, match="exactly once"):
        ClassPrompts.build(["anger"], ["a voice"])
    with pytest.raises(ValueError, match="other than"):
        ClassPrompts.build(["anger"], ["{label} {x}"])
    assert parse_label_words(["anger=angry", " sadness = sad "]) == {"anger": "angry", "sadness": "sad"}
    with pytest.raises(ValueError, match="CLASS=WORD"):
        parse_label_words(["anger"])


def test_shared_label_space():
    pytest.importorskip("fastclap.data")  # the cross-corpus label map lives in the data pipeline
    assert [map_label(x, "shared") for x in ("angry", "happiness", "sad", "neutral")] == \
        ["anger", "happiness", "sadness", "neutral"]
    assert map_label("calm", "dataset") == "calm"
    with pytest.raises(ValueError, match="'calm' has no shared"):
        map_label("calm", "shared")


def test_reports(tmp_path):
    m = classification_metrics([0, 0, 1], [0, 1, 1], ["anger", "sadness"])
    report = {"checkpoint": "/runs/x", "date": "2026-01-01T00:00:00+00:00",
              "dataset": {"name": "emodb", "split": "test"}, "zero_shot": m,
              "prompts": {"templates": ["{label}"], "classes": ["anger", "sadness"], "words": ["anger", "sadness"]},
              "retrieval": {"audio_to_text": {1: 0.5}, "text_to_audio": {1: 1.0}, "n_audio": 3, "n_text": 2}}
    md = markdown_summary(report)
    assert "| UAR | 75.0 |" in md and "| WAR | 66.7 |" in md and "| chance (UAR) | 50.0 |" in md
    assert "| anger | 2 | 50.0 |" in md and "| audio to text | 50.0 |" in md
    path = write_json(report, str(tmp_path / "r" / "report.json"))
    assert json.loads(open(path).read())["zero_shot"]["confusion"] == [[1, 1], [0, 1]]
    png = plot_confusion(m["confusion"], m["classes"], str(tmp_path / "c.png"), "t")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_report_that_cannot_be_written_leaves_the_previous_one(tmp_path, monkeypatch):
    import fastclap.serialization as serialization
    from fault_train import FullDisk

    path = str(tmp_path / "report.json")
    write_json({"uar": 0.5}, path)
    monkeypatch.setattr(serialization, "_open_for_write", lambda p: FullDisk(p, 10))
    with pytest.raises(serialization.WriteError, match="report.json.*no space left"):
        write_json({"uar": 0.75, "classes": ["anger"] * 20}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no partial temporary file
    assert json.loads(open(path).read()) == {"uar": 0.5}
    monkeypatch.undo()
    write_json({"uar": math.nan}, path)  # an undefined score is kept, not refused
    assert math.isnan(json.loads(open(path).read())["uar"])
