"""A synthetic corpus with the item format of ``fastclap.data.ClapDataset`` (tests and smoke runs); batches
are stacked by ``fastclap.data.collate_clap`` like a real corpus'.

Each clip has a label among four emotions; its LLD frames (or waveform) and its 88 "functionals" carry a
label-dependent pattern plus noise, and its caption is templated from the label, so a CLAP model can learn
to align them. Crops are random per (seed, epoch, item) and therefore reproducible after a resume.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch
from torch.utils.data import Dataset

from .manifest import shared_label
from .va_labels import va_coordinates

LABELS = ("angry", "happy", "neutral", "sad")
FRAME_RATE = 100  # LLD frames per second (10 ms hop)
SAMPLE_RATE = 16000


class SyntheticClapDataset(Dataset):
    """``split`` "train" holds the first 3/4 of ``n_clips``; "valid" and "test" both hold the rest."""

    def __init__(self, n_clips: int, split: str, mode: str, crop_seconds: float, input: str = "lld",
                 repeats: int = 1, seed: int = 0) -> None:
        gen = np.random.default_rng(12345)
        n_train = max(1, (3 * n_clips) // 4)
        ids = range(0, n_train) if split == "train" else range(n_train, n_clips)
        self.mode, self.input, self.seed, self.epoch = mode, input, seed, 0
        self.repeats = repeats if mode == "train" else 1
        self.crop_seconds = crop_seconds
        pattern = gen.normal(size=(len(LABELS), 25)).astype(np.float32)
        par_pattern = gen.normal(size=(len(LABELS), 88)).astype(np.float32)
        self.clips: List[Dict[str, Any]] = []
        g2 = np.random.default_rng(54321)  # input "ge2e": a stand-in 256-d embedding per clip, label-dependent
        ge2e_pattern = g2.normal(size=(len(LABELS), 256))
        for i in range(n_clips):
            label = i % len(LABELS)
            frames = int(gen.integers(150, 300))
            lld = (pattern[label] * 3 + 10 + gen.normal(size=(frames, 25))).astype(np.float32)
            pitch = "high" if gen.random() > 0.5 else "low"
            clip = {"lld": lld, "label": LABELS[label], "speaker": f"s{i % 5}",
                    "paraling": (par_pattern[label] + 0.5 * gen.normal(size=88)).astype(np.float32),
                    "caption": f"speaker has a {pitch} pitch and emotion is {LABELS[label]}", "freq": 150 + 60 * label}
            v = ge2e_pattern[label] + g2.normal(size=256)
            clip["ge2e"] = (v / np.linalg.norm(v)).astype(np.float32)
            if i in ids:
                self.clips.append(clip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips) * self.repeats

    def __getitem__(self, index: int) -> Dict[str, Any]:
        clip = self.clips[index % len(self.clips)]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        item = {"caption": clip["caption"], "label": clip["label"], "shared_label": shared_label(clip["label"]),
                "speaker": clip["speaker"], "paraling": torch.from_numpy(clip["paraling"]),
                "index": index % len(self.clips), "va": torch.tensor(va_coordinates(clip["label"]))}
        if self.input == "lld":
            n = min(len(clip["lld"]), int(self.crop_seconds * FRAME_RATE))
            start = int(rng.integers(0, len(clip["lld"]) - n + 1)) if self.mode == "train" else 0
            item["lld"] = torch.from_numpy(clip["lld"][start:start + n].copy())
        elif self.input == "functionals":
            n = 0
        elif self.input == "ge2e":
            item["ge2e"], n = torch.from_numpy(clip["ge2e"]), 1
        else:
            n = int(self.crop_seconds * SAMPLE_RATE * (0.6 + 0.4 * rng.random()))
            t = np.arange(n) / SAMPLE_RATE
            wav = 0.3 * np.sin(2 * np.pi * clip["freq"] * t) + 0.05 * rng.normal(size=n)
            item["waveform"] = torch.from_numpy(wav.astype(np.float32))
        item["length"] = n
        return item

