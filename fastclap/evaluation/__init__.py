"""Zero-shot evaluation of CLAP / SmoothCLAP models (docs/loss_spec.md section 6): class prompts, UAR / WAR /
confusion matrix, audio<->text retrieval recall@k, JSON / Markdown / PNG reports. The command line is
``python -m fastclap.evaluate``; the engine-free parts (metrics, prompts, reports) need only torch, numpy,
scikit-learn and matplotlib."""
from .metrics import classification_metrics, recall_at_k, retrieval_metrics, zero_shot_predict
from .prompts import DEFAULT_TEMPLATES, ClassPrompts, map_label, parse_label_words
from .report import markdown_summary, plot_confusion, versions, write_json

__all__ = ["classification_metrics", "recall_at_k", "retrieval_metrics", "zero_shot_predict", "DEFAULT_TEMPLATES",
           "ClassPrompts", "map_label", "parse_label_words", "markdown_summary", "plot_confusion", "versions",
           "write_json"]
