"""Real-audio data pipeline: manifests, audio I/O, openSMILE eGeMAPS features, ParaCLAP captions, splits,
torch Dataset and collate, and a small embedded sample (RAVDESS + EmoDB clips) in ``fastclap/data/sample``.

Contract for the trainer
------------------------
1. ``python -m fastclap.data prepare --corpus emodb|ravdess|manifest|sample --root DIR --out OUT`` (or
   :func:`prepare` on rows from :func:`read_emodb` / :func:`read_ravdess` / :func:`read_manifest`) writes OUT.
2. ``prepared = load_prepared(OUT)`` -> :class:`PreparedCorpus`: manifest rows (with ``split`` and ``caption``),
   16 kHz waveforms, raw eGeMAPSv02 functionals (N, 88) and LLDs (frames, 25) per clip, phrases, fitted caption
   bins and z-normalisation statistics (both fitted on the train split only). ``prepared.split_indices(split)``,
   ``prepared.label_words(split)`` (zero-shot class words), ``prepared.meta`` (feature names, skipped files).
3. ``ds = ClapDataset(prepared, split, mode="train"|"eval", crop_seconds=float|None, input="waveform"|"lld",
   phrase_sampling=bool, seed=int, repeats=int)``; item = dict(``waveform`` (T,) float32 16 kHz | ``lld``
   (frames, 25) float32 z-normalised, ``length`` int, ``caption`` str, ``label`` str, ``shared_label`` str,
   ``paraling`` (88,) float32 z-normalised, ``speaker`` str, ``index`` int). ``ds.set_epoch(e)`` per epoch.
4. ``DataLoader(ds, batch_size=B, shuffle=True, collate_fn=collate_clap)`` -> dict(``waveforms`` (B, T) float32
   + ``attention_mask`` (B, T) int64 | ``lld`` (B, F, 25) float32 + ``lld_mask`` (B, F) int64, ``captions``
   list[str], ``paraling`` (B, 88) float32, ``labels`` / ``shared_labels`` / ``speakers`` list[str],
   ``indices`` (B,) int64).
5. Large contrastive batches from few clips: ``repeats=repeats_for_batch(len(prepared.split_indices("train")),
   8192)``; each repeat of a clip gets its own random crop and phrase subset.

Cross-corpus label map (:data:`LABEL_MAP`): anger/angry -> anger, happiness/happy -> happiness, sadness/sad ->
sadness, neutral -> neutral. Captions use each corpus' own word; ``shared_label`` gives the shared class.
"""
from fastclap.lazy import lazy_attributes

from .prepare import prepare  # eager: the name would otherwise be the submodule fastclap.data.prepare (numpy only)

# Every name below loads its module on first access (fastclap.lazy), so that importing a light module of this
# package (the command-line parsers do) does not pull torch in.
_LAZY = {
    "TARGET_SR": "audio",
    "BadAudioError": "audio",
    "crop_or_pad": "audio",
    "decode_audio": "audio",
    "load_audio": "audio",
    "resample": "audio",
    "to_mono": "audio",
    "CaptionBins": "captions",
    "join_caption": "captions",
    "phrases_for": "captions",
    "sample_phrases": "captions",
    "ClapDataset": "dataset",
    "collate_clap": "dataset",
    "repeats_for_batch": "dataset",
    "NormStats": "features",
    "extract_signal": "features",
    "LABEL_MAP": "manifest",
    "SHARED_CLASSES": "manifest",
    "ManifestRow": "manifest",
    "read_emodb": "manifest",
    "read_manifest": "manifest",
    "read_ravdess": "manifest",
    "shared_label": "manifest",
    "write_manifest": "manifest",
    "PreparedCorpus": "prepare",
    "load_prepared": "prepare",
    "assign_splits": "splits",
    "cross_corpus_split": "splits",
    "speaker_split": "splits",
}

__all__ = [
    "TARGET_SR", "BadAudioError", "crop_or_pad", "decode_audio", "load_audio", "resample", "to_mono",
    "CaptionBins", "join_caption", "phrases_for", "sample_phrases", "ClapDataset", "collate_clap",
    "repeats_for_batch", "NormStats", "extract_signal", "LABEL_MAP", "SHARED_CLASSES", "ManifestRow",
    "read_emodb", "read_manifest", "read_ravdess", "shared_label", "write_manifest", "PreparedCorpus",
    "load_prepared", "prepare", "assign_splits", "cross_corpus_split", "speaker_split",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
