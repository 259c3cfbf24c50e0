"""Class prompts for zero-shot classification (docs/loss_spec.md section 6).

A class is scored by the text embedding of its prompts: each template with ``{label}`` replaced by the class'
label word. With several templates the class embedding is the mean of the template embeddings, L2-normalised
again (prompt ensembling, as CLIP's zero-shot classifier). The default template is the caption phrase
"emotion is {label}"; :data:`TEMPLATE_SETS` names alternative sets, chosen among on the validation split only
(:func:`fastclap.evaluation.runner.choose_templates`).

Label words. The classes are the emotion labels of the evaluated split, and by default the word of a class
is the label itself: the prepared manifests already store English emotion words (EmoDB: anger, boredom,
disgust, fear, happiness, neutral, sadness; RAVDESS: neutral, calm, happy, sad, angry, fearful, disgust,
surprised), the same words the ParaCLAP captions use ("emotion is {label}"). ``label_space="shared"``
maps every label through the cross-corpus label map ``fastclap.data.LABEL_MAP`` (anger/angry -> anger,
happiness/happy -> happiness, sadness/sad -> sadness, neutral -> neutral), so both corpora are scored on the
same four classes with the same words. ``label_words`` overrides the word of any class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from fastclap.config import EvalConfig, check_templates

DEFAULT_TEMPLATES: Tuple[str, ...] = (EvalConfig.prompt,)  # the trainer's validation prompt: the caption phrase
# Named prompt sets a zero-shot evaluation may choose among on the validation split (never on the test split).
# "caption" is the phrase of the ParaCLAP captions; "caption_ensemble" averages it with the other caption
# phrasings of the same class word; "sentence" is a CLIP-style sentence the captions never contain.
TEMPLATE_SETS: Dict[str, Tuple[str, ...]] = {
    "caption": ("emotion is {label}",),
    "caption_ensemble": ("emotion is {label}", "the emotion is {label}", "speaker sounds {label}",
                         "the speaker's emotion is {label}"),
    "sentence": ("this person is feeling {label}.",),
    "sentence_ensemble": ("this person is feeling {label}.", "a {label} voice.", "the speaker sounds {label}.",
                          "a recording of {label} speech."),
}
LABEL_SPACES = ("dataset", "shared")


def map_label(label: str, label_space: str) -> str:
    """The class of a corpus label in ``label_space`` ("dataset": the label itself; "shared": its shared
    cross-corpus class). Raises ValueError for an unknown space or a label outside the shared classes."""
    if label_space == "dataset":
        return label
    if label_space == "shared":
        from fastclap.data import SHARED_CLASSES, shared_label

        cls = shared_label(label)
        if cls is None:
            raise ValueError(f"label {label!r} has no shared cross-corpus class (the shared classes: "
                             f"{sorted(SHARED_CLASSES)}): add --shared-only (shared_only=True) to keep only the "
                             "clips of those classes, or score the corpus' own labels with --label-space dataset")
        return cls
    raise ValueError(f"label_space must be one of {LABEL_SPACES}, got {label_space!r}")


@dataclass(frozen=True)
class ClassPrompts:
    """The prompted classes, their label words and the prompt texts.

    Attributes:
        classes: class names in index order.
        words: the label word of each class (same order).
        templates: the prompt templates.
    """

    classes: Tuple[str, ...]
    words: Tuple[str, ...]
    templates: Tuple[str, ...]

    @classmethod
    def build(cls, classes: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
              label_words: Optional[Mapping[str, str]] = None) -> "ClassPrompts":
        """Prompts for ``classes``; the word of class c is ``label_words[c]`` if given, else c.

        Raises ValueError for no classes, repeated classes, an empty word, a ``label_words`` key that is not a
        class, or bad templates.
        """
        classes = tuple(classes)
        if not classes:
            raise ValueError("prompts: no classes to prompt (the evaluated split has no labelled clips)")
        if len(set(classes)) != len(classes):
            raise ValueError(f"prompts: classes repeat: {list(classes)}")
        label_words = dict(label_words or {})
        extra = sorted(set(label_words) - set(classes))
        if extra:
            raise ValueError(f"label_words names {extra}, which are not classes of this evaluation {list(classes)}")
        words = tuple(label_words.get(c, c) for c in classes)
        for c, w in zip(classes, words):
            if not isinstance(w, str) or not w.strip():
                raise ValueError(f"label word of class {c!r} is empty")
        return cls(classes, words, check_templates(templates))

    def texts(self) -> List[List[str]]:
        """texts()[c][t] = template t filled with the word of class c."""
        return [[t.format(label=w) for t in self.templates] for w in self.words]

    def index(self, label: str) -> int:
        """Class index of ``label``. Raises ValueError naming a label without a prompt."""
        try:
            return self.classes.index(label)
        except ValueError:
            raise ValueError(f"label {label!r} has no prompt word (prompted classes: {list(self.classes)})") from None

    def encode(self, encode_text: Callable[[List[str]], "torch.Tensor"]) -> "torch.Tensor":
        """(C, D) fp32 L2-normalised class embeddings: the mean over templates of ``encode_text`` of each prompt,
        re-normalised. ``encode_text(list[str]) -> (n, D)`` is e.g. ``model.encode_text``."""
        import torch  # here, not at the top: the evaluation command line reads this module before torch loads

        flat = [p for row in self.texts() for p in row]
        with torch.no_grad():
            emb = encode_text(flat).float().reshape(len(self.classes), len(self.templates), -1)
            return torch.nn.functional.normalize(emb.mean(dim=1), dim=-1)


def parse_label_words(items: Sequence[str]) -> Dict[str, str]:
    """Parse CLI ``CLASS=WORD`` pairs into a dict. Raises ValueError naming a malformed item."""
    out: Dict[str, str] = {}
    for it in items or ():
        cls, sep, word = it.partition("=")
        if not sep or not cls.strip() or not word.strip():
            raise ValueError(f"--label-word {it!r}: expected CLASS=WORD, e.g. anger=angry")
        out[cls.strip()] = word.strip()
    return out
