"""Evaluate's answers to wrong inputs, none of which needs the model to load: an unfinished run, a run's
config.json as --checkpoint, non-audio bytes, a 10-minute recording, --dataset without --root (checked before
the model loads: loading it here fails the test)."""
import json
import os

import numpy as np
import pytest

import fastclap.evaluation.runner as runner
from fastclap.data.audio import BadAudioError, decode_audio
from fastclap.evaluate import main as evaluate_main


def _unfinished_run(tmp_path, export=True):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"fastclap": {"run": {"export": export}, "schedule": {"steps": 30}}}))
    (run / "checkpoints" / "latest").write_text("step_00000010")
    return run


def test_an_unfinished_run_says_it_has_not_finished(tmp_path, capsys):
    run = _unfinished_run(tmp_path)
    assert evaluate_main(["--checkpoint", str(run), "--prepared", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has not finished (its newest checkpoint is step_00000010 of 30 steps; fastclap.run.export is true" in err
    assert "run the trainer with fastclap.run.export: true" not in err
    run.rename(tmp_path / "old")
    run = _unfinished_run(tmp_path, export=False)
    assert evaluate_main(["--checkpoint", str(run), "--prepared", str(tmp_path)]) == 2
    assert "trained with fastclap.run.export: false" in capsys.readouterr().err


def test_config_json_as_checkpoint_is_named_as_such(tmp_path, capsys):
    path = _unfinished_run(tmp_path) / "config.json"
    assert evaluate_main(["--checkpoint", str(path), "--prepared", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: a JSON file (a run's config.json?), not an exported model" in err
    assert "may run code" not in err and "Traceback" not in err


def test_non_audio_bytes_name_the_file_not_a_buffer():
    with pytest.raises(BadAudioError) as err:
        decode_audio(b"these bytes are a text file, not audio\n" * 20, "clips/notes.wav")
    msg = str(err.value)
    assert msg.startswith("clips/notes.wav: cannot decode audio") and "BytesIO" not in msg and "0x" not in msg


def test_a_ten_minute_recording_is_refused_from_its_header(tmp_path):
    import soundfile as sf

    path = tmp_path / "noise.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(16000 * 600)).astype(np.float32), 16000, subtype="PCM_16")
    with pytest.raises(BadAudioError, match=r"noise\.wav: too long \(600\.0 s; at most \d+ s per clip"):
        decode_audio(path.read_bytes(), str(path))


def test_dataset_without_root_fails_before_the_model_loads(tmp_path, capsys, monkeypatch):
    run = _unfinished_run(tmp_path)
    (run / "export").mkdir()
    (run / "export" / "model.pt").write_bytes(b"PK\x03\x04" + bytes(60))  # looks like a torch file; never loaded

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the data arguments were checked")

    monkeypatch.setattr(runner, "load_model", no_model)
    monkeypatch.setattr("fastclap.model.load_exported", no_model)
    assert evaluate_main(["--checkpoint", str(run), "--dataset", "emodb", "--out", str(tmp_path / "o")]) == 2
    assert "--dataset emodb needs --root" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "prepared")
