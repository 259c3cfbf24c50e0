"""docs/loss_spec.md: every worked example it states is evaluated with fastclap's reference implementations, and
every "spec Sec. N" / docs/loss_spec.md reference in the code points to a section the document has.

The examples' numbers were worked out by hand (closed forms given beside them in the document); here they are
recomputed by the dense reference backends (fp32) and, for the gradient, by autograd through the reference."""
import ast
import os
import re

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "docs", "loss_spec.md")
KINDS = {"clap", "smoothclap", "rnc", "siglip", "caption", "uar"}


def _text():
    with open(SPEC, encoding="utf-8") as fh:
        return fh.read()


def _examples():
    out = []
    for block in re.findall(r"```example\n(.*?)```", _text(), flags=re.S):
        fields = {}
        for line in block.strip().splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = ast.literal_eval(value.strip()) if key.strip() != "kind" else value.strip()
        out.append(fields)
    return out


def _sections():
    return {int(n) for n in re.findall(r"^## (\d+)\. ", _text(), flags=re.M)}


def _t(value):
    return torch.tensor(value, dtype=torch.float32)


def _close(got, want):
    assert got == pytest.approx(want, rel=2e-6, abs=2e-7), (got, want)


def _sources(ex):
    return dict(soft_target_features=[_t(u) for u in ex.get("sources", [])], soft_weight=ex.get("soft_weight", 0.0),
                source_weights=tuple(ex.get("source_weights", ())),
                source_temperatures=tuple(ex.get("source_temperatures", ())))


def _run(ex):
    kind = ex["kind"]
    if kind in ("clap", "smoothclap"):
        from fastclap.losses import smooth_clap_loss

        scale = torch.tensor(ex["logit_scale"], requires_grad=True)
        kwargs = _sources(ex) if kind == "smoothclap" else {"soft_weight": 0.0}
        loss = smooth_clap_loss(_t(ex["audio_features"]), _t(ex["text_features"]), scale, backend="reference",
                                **kwargs)
        _close(float(loss.detach()), ex["loss"])
        if "dloss_dlogit_scale" in ex:
            loss.backward()
            _close(float(scale.grad), ex["dloss_dlogit_scale"])
    elif kind == "rnc":
        from fastclap.losses import rank_n_contrast_loss

        for backend in ("reference", "chunked"):  # the tie rule holds in the sorted backend too
            loss = rank_n_contrast_loss(_t(ex["audio_features"]), _t(ex["text_features"]), _t(ex["logit_scale"]),
                                        _t(ex["labels"]), backend=backend)
            _close(float(loss.detach()), ex["loss"])
    elif kind == "siglip":
        from fastclap.losses.siglip import siglip_loss

        loss = siglip_loss(_t(ex["audio_features"]), _t(ex["text_features"]), _t(ex["logit_scale"]),
                           _t(ex["logit_bias"]), backend="reference", **_sources(ex))
        _close(float(loss.detach()), ex["loss"])
    elif kind == "caption":
        from fastclap.data.captions import join_caption, phrases_for

        assert join_caption(phrases_for(ex["levels"], ex["emotion"], ex["gender"])) == ex["caption"]
    elif kind == "uar":
        from fastclap.evaluation.metrics import classification_metrics

        scores = classification_metrics(ex["y_true"], ex["y_pred"], ex["classes"])
        for key in ("uar", "war", "chance_uar"):
            _close(scores[key], ex[key])
    else:
        raise AssertionError(f"docs/loss_spec.md: unknown example kind {kind!r}")


def test_the_document_has_an_example_of_every_kind():
    assert {ex["kind"] for ex in _examples()} == KINDS


@pytest.mark.parametrize("index", range(len(_examples())))
def test_worked_example_matches_the_reference(index):
    _run(_examples()[index])


def test_a_wrong_stated_value_is_caught():
    """Control: the check is not vacuous - the first loss example with its value nudged fails."""
    ex = dict(next(e for e in _examples() if e["kind"] == "clap"))
    ex["loss"] += 1e-4
    with pytest.raises(AssertionError):
        _run(ex)


_REFERENCE = re.compile(r"docs/loss_spec\.md|spec Sec\.|spec section|loss spec section")
_NUMBERS = re.compile(r"(?:Sec\.|sections?)\s+(\d+(?:\s*-\s*\d+)?(?:\s*(?:,|and)\s*\d+(?:\s*-\s*\d+)?)*)")


def _referenced_sections():
    """(path:line, section) for every section a spec reference in fastclap/, kernels/, benchmarks/, tests/ names."""
    refs = []
    for top in ("fastclap", "kernels", "benchmarks", "tests"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if not name.endswith(".py") or name == "test_loss_spec.py":
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as fh:
                    for n, line in enumerate(fh, 1):
                        if not _REFERENCE.search(line):
                            continue
                        where = f"{os.path.relpath(path, ROOT)}:{n}"
                        refs.append((where, None))
                        for group in _NUMBERS.findall(line):
                            for part in re.split(r"\s*(?:,|and)\s*", group):
                                lo, _, hi = part.partition("-")
                                for sec in range(int(lo), int(hi or lo) + 1):
                                    refs.append((where, sec))
    return refs


def test_every_spec_reference_in_the_code_points_to_a_section():
    refs = _referenced_sections()
    assert len({w for w, _ in refs}) >= 20  # the references are found (22 files refer to the document)
    sections = _sections()
    assert sections >= {1, 2, 3, 4, 5, 6}
    missing = [(w, s) for w, s in refs if s is not None and s not in sections]
    assert not missing, missing
