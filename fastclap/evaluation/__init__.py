"""Zero-shot evaluation of CLAP / SmoothCLAP models (docs/loss_spec.md section 6): class prompts, UAR / WAR /
confusion matrix, audio<->text retrieval recall@k, JSON / Markdown / PNG reports. The command line is
``python -m fastclap.evaluate``; the engine-free parts (metrics, prompts, reports) need only torch, numpy,
scikit-learn and matplotlib."""
from fastclap.lazy import lazy_attributes

# Every name below loads its module on first access (fastclap.lazy), so that importing a light module of this
# package (the command-line parsers do) does not pull torch in.
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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
