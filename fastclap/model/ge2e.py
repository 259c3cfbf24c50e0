"""GE2E speaker encoder with the pretrained weights of the ``resemblyzer`` wheel, in plain torch.

The network is the generalised end-to-end (GE2E) speaker verification encoder of Wan et al. (ICASSP 2018),
as trained and shipped by resemblyzer (Apache-2.0): a 3-layer LSTM (hidden 256) over 40-band mel power
spectrogram frames (25 ms Hann window, 10 ms hop, 16 kHz), the last layer's final hidden state through a linear
layer (256 -> 256) and a ReLU, then L2 normalisation. An utterance is cut into partial windows of 160 frames
(1.6 s) taken every ``round(16000 / 1.3 / 160) = 77`` frames; the last window is kept if at least 75 % of it holds
audio; the utterance embedding is the L2-normalised mean of the partial embeddings.

Front end (resemblyzer's ``wav_to_mel_spectrogram``, written here with ``torch.stft``): centred STFT with zero
padding of n_fft / 2 on both sides, periodic Hann window of 400 samples, power spectrum, Slaney-style mel
filterbank (40 bands, 0-8 kHz, area-normalised) - *not* a log-mel spectrogram. Before embedding, resemblyzer
raises quiet waveforms to -30 dBFS RMS (never lowers them): :func:`normalize_volume`. Its optional voice-activity
trimming (webrtcvad) is a data preparation step, not part of the network, and is not applied here.

The weights are read only from the wheel's ``resemblyzer/pretrained.pt`` with ``torch.load(weights_only=True)``;
resemblyzer's Python code is never imported here (its import needs librosa and webrtcvad).
"""
from __future__ import annotations

import importlib.util
import math
import os
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 400          # 25 ms
HOP = 160            # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
PARTIAL_RATE = 1.3    # partial windows per second
MIN_COVERAGE = 0.75
HIDDEN = 256
EMBED_DIM = 256
TARGET_DBFS = -30.0


def resemblyzer_weights_path() -> str:
    """Path of ``pretrained.pt`` inside the installed resemblyzer wheel (never imports resemblyzer).

    Raises FileNotFoundError with the install command when the wheel is not installed.
    """
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the GE2E audio tower needs the resemblyzer wheel's weights: "
                                "pip install -c constraints.txt --no-deps resemblyzer")
    path = os.path.join(list(spec.submodule_search_locations)[0], "pretrained.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing from the installed resemblyzer wheel")
    return path


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale: linear below 1 kHz (3 per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    step = math.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / step, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    step = math.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(step * (m - 15.0)), m * (200.0 / 3))


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, centres equally spaced on the Slaney mel scale
    between 0 Hz and sr / 2, each scaled by 2 / (its bandwidth in Hz) so every filter has the same area
    (the filterbank librosa builds by default, Slaney 1998)."""
    fft_hz = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    widths = np.diff(edges)
    slopes = edges[:, None] - fft_hz[None, :]
    rising = -slopes[:-2] / widths[:-1, None]
    falling = slopes[2:] / widths[1:, None]
    fb = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(fb.astype(np.float32))


def normalize_volume(wav: torch.Tensor, target_dbfs: float = TARGET_DBFS, increase_only: bool = True) -> torch.Tensor:
    """Scale each row of ``wav`` (..., T) float so its RMS reaches ``target_dbfs`` dBFS: only ever louder with
    ``increase_only`` (resemblyzer's ``normalize_volume(..., increase_only=True)``, the "raise" setting of
    ``model.audio.ge2e_volume``), else louder or quieter ("fixed"). An all-zero row stays zero."""
    rms = wav.float().pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-12)
    gain = (10.0 ** (target_dbfs / 20.0)) / rms
    if increase_only:
        gain = torch.where(gain > 1.0, gain, torch.ones_like(gain))
    return wav * gain.to(wav.dtype)


def partial_slices(n_samples: int, rate: float = PARTIAL_RATE, min_coverage: float = MIN_COVERAGE
                   ) -> List[Tuple[int, int]]:
    """Frame ranges [start, start + 160) of the partial windows of an utterance of ``n_samples`` samples.

    Windows start every ``round(sr / rate / hop)`` frames and cover the ``ceil((n_samples + 1) / hop)`` frames of
    the centred STFT; the last window is dropped when less than ``min_coverage`` of its samples are audio (unless
    it is the only one). Raises ValueError for a rate outside [sr / (hop * 160), sr / hop].
    """
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    n_frames = int(math.ceil((n_samples + 1) / HOP))
    step = int(round(SAMPLE_RATE / rate / HOP))
    if not 0 < step <= PARTIAL_FRAMES:
        raise ValueError(f"rate {rate}: partial windows must start every 1..{PARTIAL_FRAMES} frames")
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    if len(starts) > 1 and (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP) < min_coverage:
        starts = starts[:-1]
    return [(s, s + PARTIAL_FRAMES) for s in starts]


class GE2EEncoder(nn.Module):
    """The GE2E network and its mel front end.

    * ``mel(wav)``: (B, T) float 16 kHz -> (B, frames, 40) float32 mel power frames, frames = T // 160 + 1.
    * ``frames(mels)``: (B, F, 40) -> (B, F, 256) last-LSTM-layer outputs (frame-level, for attention pooling).
    * ``forward(mels)``: (B, F, 40) -> (B, 256) L2-normalised embeddings (resemblyzer's ``VoiceEncoder.forward``).
    * ``embed_utterance(wav)``: (T,) -> (256,) the partial-window utterance embedding.

    Args:
        weights: path of a resemblyzer-format checkpoint (a dict with ``model_state``); default: the wheel's
            ``pretrained.pt``; ``None`` with ``pretrained=False`` gives random weights (tests).
    Raises FileNotFoundError when the wheel is missing, ValueError when the checkpoint lacks a GE2E tensor.
    """

    def __init__(self, weights: Optional[str] = None, pretrained: bool = True) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, 3, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBED_DIM)
        self.register_buffer("mel_basis", mel_filterbank(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        if pretrained:
            path = weights or resemblyzer_weights_path()
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("model_state", state) if isinstance(state, dict) else state
            own = self.state_dict()
            missing = sorted(k for k in own if k not in state)
            if missing:
                raise ValueError(f"{path}: not a GE2E checkpoint (missing {missing[:3]})")
            self.load_state_dict({k: state[k] for k in own})

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 2:
            raise ValueError(f"wav must be (B, T), got {tuple(wav.shape)}")
        spec = torch.stft(wav.float(), N_FFT, HOP, window=self.window, center=True, pad_mode="constant",
                          return_complex=True)
        power = spec.real.pow(2) + spec.imag.pow(2)  # (B, 201, frames)
        return torch.matmul(self.mel_basis, power).transpose(1, 2).contiguous()

    def frames(self, mels: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(mels.to(self.linear.weight.dtype))
        return out

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, 256) pooled LSTM state -> (B, 256) L2-normalised embedding (linear, ReLU, normalise)."""
        e = F.relu(self.linear(hidden))
        return e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(mels.to(self.linear.weight.dtype))
        return self.project(h[-1])

    def partial_embeddings(self, wav: torch.Tensor, rate: float = PARTIAL_RATE,
                           min_coverage: float = MIN_COVERAGE) -> torch.Tensor:
        """(P, 256) embeddings of the partial windows of one utterance ``wav`` (T,)."""
        if wav.dim() != 1 or wav.numel() == 0:
            raise ValueError(f"wav must be a non-empty (T,) waveform, got {tuple(wav.shape)}")
        slices = partial_slices(int(wav.numel()), rate, min_coverage)
        need = slices[-1][1] * HOP
        if need >= wav.numel():
            wav = F.pad(wav, (0, need - wav.numel()))
        mel = self.mel(wav[None])[0]
        return self(torch.stack([mel[a:b] for a, b in slices]))

    def embed_utterance(self, wav: torch.Tensor, rate: float = PARTIAL_RATE,
                        min_coverage: float = MIN_COVERAGE) -> torch.Tensor:
        """(256,) L2-normalised mean of the partial-window embeddings of ``wav`` (T,)."""
        e = self.partial_embeddings(wav, rate, min_coverage).mean(0)
        return e / e.norm()
