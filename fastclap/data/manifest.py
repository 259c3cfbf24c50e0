"""Manifest format and readers: one CSV row per audio clip.

The manifest is a UTF-8 CSV with a header row. Columns (order free; unknown columns are kept as ``extra``):

==========  ========  ============================================================================
column      required  meaning
==========  ========  ============================================================================
path        yes       audio file, relative to the root given by the user (absolute paths allowed)
speaker     yes       speaker id; splits never put one speaker in two splits. Readers of the shipped
                      corpora prefix the corpus (``emodb_03``, ``ravdess_01``) so ids never collide
corpus      no        corpus name (``emodb``, ``ravdess``, or free text); default ``custom``
language    no        ISO 639-1 code, e.g. ``de``, ``en``
gender      no        ``male`` / ``female`` (or empty); used by the caption phrase "a {gender} is speaking"
emotion     no        the corpus' own label word (EmoDB ``anger``, RAVDESS ``angry`` ...); empty allowed
caption     no        a ready-made caption; when present it replaces the generated ParaCLAP caption
split       no        ``train`` / ``valid`` / ``test``; when present for every row it is used as given
sample_rate no        expected sample rate in Hz; a file that differs is bad audio
channels    no        expected channel count; a file that differs is bad audio
==========  ========  ============================================================================

Errors are :class:`ValueError` naming the manifest file, the 1-based data row (the header is row 0) and the
column. Duplicate ``path`` values are errors naming both rows.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

MANIFEST_COLUMNS = (
    "path", "corpus", "speaker", "language", "gender", "emotion", "caption", "split", "sample_rate", "channels",
)
REQUIRED_COLUMNS = ("path", "speaker")
SPLITS = ("train", "valid", "test")

# Cross-corpus label map: each corpus' own emotion word -> the shared class name. The four shared classes are
# the ones both EmoDB and RAVDESS hold; RAVDESS' calm, fearful, disgust and surprised have no EmoDB counterpart.
SHARED_CLASSES = ("anger", "happiness", "sadness", "neutral")
LABEL_MAP: Dict[str, str] = {
    "anger": "anger", "angry": "anger",
    "happiness": "happiness", "happy": "happiness",
    "sadness": "sadness", "sad": "sadness",
    "neutral": "neutral",
}


def shared_label(word: str) -> Optional[str]:
    """Map a corpus' emotion word to its shared class (``anger``/``happiness``/``sadness``/``neutral``), or None."""
    return LABEL_MAP.get(word.strip().lower())


@dataclass
class ManifestRow:
    """One clip. ``path`` is absolute after reading (resolved against the root); ``rel_path`` as written."""

    path: str
    speaker: str
    rel_path: str = ""
    corpus: str = "custom"
    language: str = ""
    gender: str = ""
    emotion: str = ""
    caption: str = ""
    split: str = ""
    sample_rate: Optional[int] = None
    channels: Optional[int] = None
    extra: Dict[str, str] = field(default_factory=dict)

    def to_record(self) -> Dict[str, str]:
        """The row as CSV fields (``path`` = ``rel_path``), extra columns after the standard ones."""
        rec = {
            "path": self.rel_path or self.path, "corpus": self.corpus, "speaker": self.speaker,
            "language": self.language, "gender": self.gender, "emotion": self.emotion, "caption": self.caption,
            "split": self.split, "sample_rate": "" if self.sample_rate is None else str(self.sample_rate),
            "channels": "" if self.channels is None else str(self.channels),
        }
        rec.update(self.extra)
        return rec


def _where(src: str, row: int, column: str) -> str:
    return f"{src}: row {row}, column '{column}'"


def _opt_int(value: str, src: str, row: int, column: str) -> Optional[int]:
    value = value.strip()
    if not value:
        return None
    try:
        out = int(float(value))
    except ValueError:
        raise ValueError(f"{_where(src, row, column)}: expected an integer, got {value!r}") from None
    if out <= 0:
        raise ValueError(f"{_where(src, row, column)}: expected a positive integer, got {value!r}")
    return out


def _decode_csv(data: bytes, src: str) -> List[Dict[str, str]]:
    """Parse CSV bytes as UTF-8; invalid bytes are reported with their row and column, never replaced."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise ValueError(f"{src}: empty manifest (no header row)")
    for name in reader.fieldnames:
        if any(0xDC80 <= ord(c) <= 0xDCFF for c in name):
            raise ValueError(f"{src}: row 0 (header): invalid UTF-8 bytes in a column name")
    records = []
    for i, rec in enumerate(reader, start=1):
        if None in rec:
            raise ValueError(f"{src}: row {i}: more fields than header columns")
        for col, val in rec.items():
            if val is None:
                raise ValueError(f"{_where(src, i, col)}: missing field (fewer fields than header columns)")
            if any(0xDC80 <= ord(c) <= 0xDCFF for c in val):
                raise ValueError(f"{_where(src, i, col)}: invalid UTF-8 bytes (the manifest must be UTF-8)")
        records.append(rec)
    return records


def rows_from_records(records: Sequence[Dict[str, str]], root: str | os.PathLike, src: str) -> List[ManifestRow]:
    """Validate parsed CSV records and build :class:`ManifestRow` objects, resolving paths against ``root``.

    Raises ValueError (naming ``src``, the row and the column) for a missing required column or value, an
    unknown split, a non-integer sample_rate/channels, or a duplicate path.
    """
    root = Path(root)
    if records:
        missing = [c for c in REQUIRED_COLUMNS if c not in records[0]]
        if missing:
            raise ValueError(f"{src}: missing required column(s) {missing}; have {list(records[0])}")
    rows: List[ManifestRow] = []
    seen: Dict[str, int] = {}
    for i, rec in enumerate(records, start=1):
        rec = {k.strip(): (v or "") for k, v in rec.items()}
        for col in REQUIRED_COLUMNS:
            if not rec[col].strip():
                raise ValueError(f"{_where(src, i, col)}: empty value")
        split = rec.get("split", "").strip().lower()
        if split and split not in SPLITS:
            raise ValueError(f"{_where(src, i, 'split')}: unknown split {split!r}; expected one of {SPLITS}")
        gender = rec.get("gender", "").strip().lower()
        if gender in ("m", "man"):
            gender = "male"
        elif gender in ("f", "w", "woman"):
            gender = "female"
        rel = rec["path"].strip()
        resolved = str((root / rel).resolve()) if not os.path.isabs(rel) else str(Path(rel).resolve())
        if resolved in seen:
            raise ValueError(f"{_where(src, i, 'path')}: duplicate of row {seen[resolved]} ({rel!r})")
        seen[resolved] = i
        extra = {k: v for k, v in rec.items() if k not in MANIFEST_COLUMNS}
        rows.append(ManifestRow(
            path=resolved, rel_path=rel, speaker=rec["speaker"].strip(), corpus=rec.get("corpus", "").strip() or "custom",
            language=rec.get("language", "").strip(), gender=gender, emotion=rec.get("emotion", "").strip(),
            caption=rec.get("caption", "").strip(), split=split,
            sample_rate=_opt_int(rec.get("sample_rate", ""), src, i, "sample_rate"),
            channels=_opt_int(rec.get("channels", ""), src, i, "channels"), extra=extra,
        ))
    return rows


def read_manifest(csv_path: str | os.PathLike, root: str | os.PathLike | None = None) -> List[ManifestRow]:
    """Read a user manifest (format in this module's docstring). ``root`` defaults to the CSV's folder.

    Returns rows with absolute ``path``. Raises ValueError naming the row and column on any invalid field,
    invalid UTF-8 or duplicate path, and FileNotFoundError if the CSV is missing.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"manifest not found: {csv_path}")
    records = _decode_csv(csv_path.read_bytes(), str(csv_path))
    return rows_from_records(records, csv_path.parent if root is None else root, str(csv_path))


def write_manifest(rows: Iterable[ManifestRow], csv_path: str | os.PathLike) -> None:
    """Write rows in the manifest format (relative paths as read; extra columns appended, sorted), atomically
    (raises :class:`fastclap.serialization.WriteError` naming the file and the bytes; no partial file)."""
    from ..serialization import write_atomic

    rows = list(rows)
    extra_cols = sorted({k for r in rows for k in r.extra})
    fh = io.StringIO(newline="")
    writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS) + extra_cols)
    writer.writeheader()
    for r in rows:
        writer.writerow(r.to_record())
    data = fh.getvalue().encode("utf-8")
    write_atomic(os.fspath(csv_path), lambda f: f.write(data), needed_bytes=len(data))


def _corpus_labels(root: Path, name: str) -> List[Dict[str, str]]:
    labels = root / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"{name}: {labels} not found (root should be the corpus folder holding labels.csv)")
    return _decode_csv(labels.read_bytes(), str(labels))


def _read_shared_corpus(root: str | os.PathLike, corpus: str, language: str) -> List[ManifestRow]:
    """A shared corpus' ``labels.csv`` -> manifest rows: speakers prefixed ``<corpus>_``, corpus and language set."""
    root = Path(root)
    out = []
    for rec in _corpus_labels(root, corpus):
        rec = dict(rec)
        rec["speaker"] = f"{corpus}_" + rec["speaker"].strip()
        rec["corpus"], rec["language"] = corpus, language
        rec.pop("sha256", None)
        out.append(rec)
    return rows_from_records(out, root, str(root / "labels.csv"))


def read_emodb(root: str | os.PathLike) -> List[ManifestRow]:
    """EmoDB ``labels.csv`` (Burkhardt et al., Interspeech 2005) -> manifest rows (German, 16 kHz mono).

    Emotion words are EmoDB's: anger, happiness, sadness, neutral (and boredom, disgust, fear if present).
    Speakers become ``emodb_<id>``. Columns other than the manifest's are kept as ``extra``.
    """
    return _read_shared_corpus(root, "emodb", "de")


def read_ravdess(root: str | os.PathLike) -> List[ManifestRow]:
    """RAVDESS speech ``labels.csv`` (Livingstone & Russo, PLoS ONE 2018) -> manifest rows (English, 48 kHz).

    Emotion words are RAVDESS': neutral, calm, happy, sad, angry, fearful, disgust, surprised.
    Speakers become ``ravdess_<actor>``. 3 files are stereo (``channels`` = 2): they are mixed down on load.
    """
    return _read_shared_corpus(root, "ravdess", "en")
