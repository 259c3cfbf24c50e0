"""Frozen GE2E embeddings cached per clip, so that a contrastive step of 8192 crops costs no LSTM pass.

For ``data.input: "ge2e"`` every clip of a prepared corpus is embedded once by the pretrained GE2E network
(:mod:`fastclap.model.ge2e`): its waveform is raised to -30 dBFS if quieter (``volume`` "raise"; "fixed": set to
-30 dBFS either way, ``model.audio.ge2e_volume``) and cut into resemblyzer's 1.6 s partial windows (every
0.77 s), each window embedded. The window embeddings of all clips are stored in
``<prepared_dir>/ge2e_partials.<weights sha256[:16]>.npz`` ("fixed": ``...<sha>.fixed.npz``; ``embeddings`` (W, 256)
float32, ``offsets`` (N + 1,) int64: clip i owns rows offsets[i]:offsets[i + 1]), so another run, another seed or
another process reuses them; changed weights or another volume setting give another file name. The dataset then
builds a training crop as the L2-normalised mean of a random run of consecutive windows and a full clip as the mean
of all its windows - the utterance embedding the waveform-reading GE2E tower computes for the same clip.
"""
from __future__ import annotations

import os
from typing import Any, Tuple

import numpy as np
import torch

from ..serialization import sha256, write_atomic
from .ge2e import GE2EEncoder, resemblyzer_weights_path

VOLUMES = ("raise", "fixed")  # model.audio.ge2e_volume


@torch.no_grad()
def ge2e_partials(prepared: Any, weights: str | None = None, batch_windows: int = 256, volume: str = "raise"
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """(embeddings (W, 256) float32, offsets (N + 1,) int64) of every clip of ``prepared``, cached on disk.

    ``weights``: a resemblyzer-format checkpoint (default: the wheel's); ``volume``: "raise" or "fixed" (module
    doc). Raises ValueError for another ``volume``; FileNotFoundError without the
    resemblyzer wheel; :class:`fastclap.serialization.WriteError` (naming the cache file, the bytes and the free
    space) when the cache cannot be written - no partial file is left.
    """
    from .ge2e import HOP, normalize_volume, partial_slices

    if volume not in VOLUMES:
        raise ValueError(f"ge2e volume must be one of {VOLUMES}, got {volume!r}")
    path = weights or resemblyzer_weights_path()
    tag = "" if volume == "raise" else f".{volume}"  # "raise" keeps the file name caches had before the setting
    cache = os.path.join(str(prepared.out_dir), f"ge2e_partials.{sha256(path)[:16]}{tag}.npz")
    if os.path.isfile(cache):
        with np.load(cache) as z:
            emb, off = z["embeddings"], z["offsets"]
        if off.shape == (len(prepared) + 1,) and off[-1] == emb.shape[0]:
            return emb, off
    # building the network draws initial weights before loading the pretrained ones: keep the caller's random
    # state as it was, so a cold cache changes nothing downstream (a run's initialisation, its dropout masks)
    with torch.random.fork_rng(devices=[]):
        enc = GE2EEncoder(path).eval()
    windows, counts = [], []
    for i in range(len(prepared)):
        wav = normalize_volume(torch.from_numpy(np.array(prepared.waveform(i), dtype=np.float32)),
                               increase_only=volume == "raise")
        slices = partial_slices(int(wav.numel()))
        wav = torch.nn.functional.pad(wav, (0, max(0, slices[-1][1] * HOP - wav.numel())))
        mel = enc.mel(wav[None])[0]
        windows += [mel[a:b] for a, b in slices]
        counts.append(len(slices))
    emb = torch.cat([enc(torch.stack(windows[j:j + batch_windows]))
                     for j in range(0, len(windows), batch_windows)]).numpy().astype(np.float32)
    off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    write_atomic(cache, lambda f: np.savez(f, embeddings=emb, offsets=off), needed_bytes=emb.nbytes + off.nbytes)
    return emb, off
