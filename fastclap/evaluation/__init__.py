"""Zero-shot evaluation of CLAP / SmoothCLAP models (docs/loss_spec.md section 6): class prompts, UAR / WAR /
confusion matrix, audio<->text retrieval recall@k, JSON / Markdown / PNG reports. The command line is
``python -m fastclap.evaluate``; the engine-free parts (metrics, prompts, reports) need only torch, numpy,
scikit-learn and matplotlib."""
from typing import Any

# PEP 562: every name below loads its module on first access, so that ``import fastclap.evaluation.<module>`` of a light
# module (the command-line parsers use them) does not pull torch in.
_LAZY = {
    "classification_metrics": "metrics",
    "recall_at_k": "metrics",
    "retrieval_metrics": "metrics",
    "zero_shot_predict": "metrics",
    "DEFAULT_TEMPLATES": "prompts",
    "ClassPrompts": "prompts",
    "map_label": "prompts",
    "parse_label_words": "prompts",
    "markdown_summary": "report",
    "plot_confusion": "report",
    "versions": "report",
    "write_json": "report",
}

__all__ = ["classification_metrics", "recall_at_k", "retrieval_metrics", "zero_shot_predict", "DEFAULT_TEMPLATES",
           "ClassPrompts", "map_label", "parse_label_words", "markdown_summary", "plot_confusion", "versions",
           "write_json"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
