"""Speaker statistics a deployed model can have: protocols, a population prior, shrinkage and a speaker subspace.

Speaker normalisation (:mod:`fastclap.data.speaker_norm`) standardises every clip with the mean and sd of *all* of
its speaker's clips. In an acted corpus those clips cover every emotion in equal parts, so the statistics carry
the speaker's emotional centre: a transductive protocol that a user meeting a new speaker cannot reproduce.
This module names the settings a deployment can have and turns each into per-speaker statistics.

Protocols (:class:`Protocol`, the ``--speaker-stats`` values of ``fastclap evaluate`` and the experiment):

* ``all`` - every clip of the speaker (today's transductive speaker normalisation);
* ``none`` - no other clip: every clip is standardised with the population prior alone (below);
* ``random:K`` - an enrolment set of K clips drawn at random (any emotion, without replacement) from the
  speaker's clips, one set per speaker and draw; every clip of the speaker is then scored with the statistics of
  that set, so the scored clip may be one of the K (as in a deployment that keeps running statistics). A speaker
  with fewer than K clips uses all of them (listed in ``notes["short"]``);
* ``neutral`` - the speaker's clips labelled neutral (the label is read only to pick the enrolment set, as a
  deployment that asks for a calm recording would). A speaker without any neutral clip falls back to ``none``
  and is listed in ``notes["no_neutral"]``.

Statistics from n reference clips with mean m and population variance v, given a population prior (mu0, sd0)
fitted on the *training* speakers (:class:`Prior`; mu0 = mean of the speakers' means, sd0 = pooled
within-speaker sd) and a prior weight kappa >= 0 (a conjugate-normal shrinkage towards the population):

    mean = (n m + kappa mu0) / (n + kappa),   var = (n v + kappa sd0^2) / (n + kappa)  (n >= 2),  sd0^2  (n < 2)

With n = 0 this is the prior itself; with kappa = 0 and every clip it is today's speaker normalisation.

The *posterior* estimate (``Prior.fit(..., posterior=True)``) reads the same model as a hierarchy: a speaker's
mean is drawn around mu0 with the between-speaker variance tau^2 (per dimension, fitted on the training speakers'
means), each clip around its speaker's mean with the within-speaker variance sd0^2. What speaker normalisation
with every clip would give a clip x, (x - mu_s) / sd_s, is then estimated by its posterior mean given the n
reference clips: with kappa_d = sd0_d^2 / tau_d^2 (per dimension, in place of the fixed prior weight),

    mu_n = (n m + kappa_d mu0) / (n + kappa_d),   t_n^2 = sd0^2 / (n + kappa_d)   (posterior of mu_s)
    E[(x - mu_s) / sd | x] = (x - mu_n) sd / (sd^2 + t_n^2),   i.e. standardise with (mu_n, (sd^2 + t_n^2) / sd)

where sd is the within-speaker sd estimated as above (the prior weight kappa still shrinks the variance). With
every clip (t_n -> 0) this is plain speaker normalisation; with none (n = 0) a dimension whose speakers differ
far more than its clips do (tau >> sd0: most of a speaker embedding) is damped by sd0^2 / (sd0^2 + tau^2)
towards 0, the value its unobservable within-speaker deviation has on average, instead of carrying the new
speaker's offset tau / sd0 standard deviations out of the training range.

Bounded inputs (``Prior.fit(..., clip=c)``): a dimension that never varies over the training clips (a GE2E unit
the ReLU keeps at exactly 0 in every training clip: 36 of 256 with EmoDB's six speakers, 30 with RAVDESS's four) has
a pooled sd at the floor EPS, so a new speaker's clip that activates it is standardised to 10^4 - 10^5 "sd" under
``none`` and ``random:1`` (no spread of its own) and meets weights that never saw a non-zero input. With ``clip``
set such dimensions are set to 0 in every standardised vector (nothing about them could be learned), and every
value is clipped to [-c, c] (a tail value far outside the training range is read as "far", not as its magnitude).

Optionally the standardised vector is projected off a speaker subspace learned on the training speakers (nuisance
attribute projection, Solomonoff, Campbell & Boardman, "Advances in channel compensation for SVM speaker
recognition", ICASSP 2005): the top ``nap_rank`` principal directions of the training speakers' standardised
means.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .speaker_norm import SpeakerNormError

EPS = 1e-6
KINDS = ("all", "none", "random", "neutral")
K_LADDER = (1, 2, 4, 8, 16)  # the enrolment sizes of the report's UAR-against-K table


@dataclass(frozen=True)
class Protocol:
    """Which clips of a speaker its statistics come from (see the module doc). ``k`` only for "random"."""

    kind: str
    k: int = 0

    @classmethod
    def parse(cls, text: str, arg: str = "--speaker-stats") -> "Protocol":
        """``all``, ``none``, ``neutral`` or ``random:K`` (K >= 1). Raises ValueError naming ``arg``."""
        t = str(text).strip().lower()
        if t in ("all", "none", "neutral"):
            return cls(t)
        if t.startswith("random:"):
            try:
                k = int(t.split(":", 1)[1])
            except ValueError:
                k = 0
            if k >= 1:
                return cls("random", k)
        raise ValueError(f"{arg}: {text!r} is not a protocol; use all, none, neutral or random:K with K >= 1")

    @property
    def name(self) -> str:
        return f"random:{self.k}" if self.kind == "random" else self.kind

    @property
    def stochastic(self) -> bool:
        """True when the enrolment set is drawn at random (scores are averaged over draws)."""
        return self.kind == "random"


def reference_sets(protocol: Protocol, speakers: Sequence[str], labels: Sequence[str],
                   rng: Optional[np.random.Generator] = None) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
    """Rows whose statistics each speaker gets under ``protocol``.

    Args:
        speakers, labels: one speaker id and one emotion word per clip (N each); labels are read only by
            ``neutral`` (a clip is neutral when its shared class is "neutral").
        rng: the draw of ``random:K`` (required for it).

    Returns ``({speaker: int64 row indices}, notes)``: notes ``short`` {speaker: clips} for speakers with fewer
    than K clips (all of them used), ``no_neutral`` [speakers] without a neutral clip (empty set: the prior).
    Raises ValueError for mismatched lengths or a random protocol without ``rng``.
    """
    from .manifest import shared_label

    if len(speakers) != len(labels):
        raise ValueError(f"reference_sets: {len(speakers)} speakers but {len(labels)} labels")
    if protocol.stochastic and rng is None:
        raise ValueError(f"reference_sets: protocol {protocol.name} needs a random generator")
    by: Dict[str, List[int]] = {}
    for i, s in enumerate(speakers):
        by.setdefault(s, []).append(i)
    sets: Dict[str, np.ndarray] = {}
    notes: Dict[str, object] = {"short": {}, "no_neutral": []}
    for s in sorted(by):
        rows = np.asarray(by[s], dtype=np.int64)
        if protocol.kind == "all":
            sets[s] = rows
        elif protocol.kind == "none":
            sets[s] = rows[:0]
        elif protocol.kind == "neutral":
            sets[s] = np.asarray([i for i in rows if shared_label(labels[i]) == "neutral"], dtype=np.int64)
            if sets[s].size == 0:
                notes["no_neutral"].append(s)
        else:
            if rows.size < protocol.k:
                notes["short"][s] = int(rows.size)
            sets[s] = np.sort(rng.choice(rows, size=min(protocol.k, rows.size), replace=False))
    return sets, notes


@dataclass(frozen=True)
class Prior:
    """Population statistics of a d-dim feature over the training speakers, and an optional speaker subspace.

    Attributes: ``mean`` (d,) mean of the speakers' means; ``sd`` (d,) pooled within-speaker sd (floored at EPS);
    ``nap`` (d, r) orthonormal speaker directions in standardised units, or None; ``between`` (d,) sd of the
    speakers' means around ``mean`` (floored at EPS) when the posterior estimate is used (module doc), else None;
    ``clip`` the bound of standardised values (module doc) or None, with ``live`` (d,) bool, the dimensions that
    vary over the training clips (the others are set to 0).
    """

    mean: np.ndarray
    sd: np.ndarray
    nap: Optional[np.ndarray] = None
    between: Optional[np.ndarray] = None
    clip: Optional[float] = None
    live: Optional[np.ndarray] = None

    @classmethod
    def fit(cls, features: np.ndarray, speakers: Sequence[str], nap_rank: int = 0,
            posterior: bool = False, clip: Optional[float] = None) -> "Prior":
        """Fit on (N, d) features of the training clips grouped by ``speakers``. ``nap_rank`` (>= 0, at most
        speakers - 1) speaker directions are kept. ``posterior``: also fit the between-speaker sd (sample sd of
        the speakers' means, less the part their own sampling noise explains) for the posterior estimate; needs
        two speakers. ``clip`` (> 0): bound standardised values to [-clip, clip] and zero the dimensions that are
        constant over these clips. Raises SpeakerNormError (a ValueError) for bad shapes, non-finite values, no
        clip, a clip bound <= 0, or a rank or estimate the speakers cannot support."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(speakers) or x.shape[0] == 0:
            raise SpeakerNormError(f"speaker prior: features must be (N >= 1, d) with one speaker per row, got {x.shape} "
                             f"for {len(speakers)} speakers")
        if not np.isfinite(x).all():
            raise SpeakerNormError("speaker prior: features contain NaN or inf")
        ids = sorted(set(speakers))
        means = np.stack([x[[i for i, s in enumerate(speakers) if s == sp]].mean(0) for sp in ids])
        within = np.concatenate([x[[i for i, s in enumerate(speakers) if s == sp]] - means[k]
                                 for k, sp in enumerate(ids)])
        mean = means.mean(0)
        sd = np.maximum(np.sqrt((within ** 2).mean(0)), EPS)
        nap = None
        if nap_rank:
            if not 0 < nap_rank < len(ids):
                raise SpeakerNormError(f"speaker prior: nap rank {nap_rank} needs more than {nap_rank} training speakers, "
                                 f"got {len(ids)}")
            _, _, vt = np.linalg.svd((means - mean) / sd, full_matrices=False)
            nap = vt[:nap_rank].T.copy()
        between = None
        if posterior:
            if len(ids) < 2:
                raise SpeakerNormError(f"speaker prior: the posterior estimate needs at least 2 training speakers, "
                                       f"got {len(ids)}")
            counts = np.unique(np.asarray(speakers), return_counts=True)[1].astype(np.float64)  # sorted, as ids
            within_var = (within ** 2).sum(0) / max(x.shape[0] - len(ids), 1)  # unbiased within-speaker variance
            noise = within_var * np.mean(1.0 / counts)  # what within-speaker noise adds to the spread of the means
            between = np.maximum(np.sqrt(np.maximum(means.var(0, ddof=1) - noise, 0.0)), EPS)
        live = None
        if clip is not None:
            if not clip > 0:
                raise SpeakerNormError(f"speaker prior: the clip bound must be > 0, got {clip!r}")
            live = x.std(0) > EPS * (1.0 + np.abs(x.mean(0)))
        return cls(mean, sd, nap, between, None if clip is None else float(clip), live)

    def stats(self, reference: np.ndarray, kappa: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
        """(mean, sd) (d,) of a speaker from its (n, d) reference clips shrunk towards the prior (module doc);
        with ``between`` set, the posterior estimate's (mu_n, (sd^2 + t_n^2) / sd)."""
        ref = np.asarray(reference, dtype=np.float64).reshape(-1, self.mean.size)
        n = ref.shape[0]
        sd = self.sd
        if n >= 2:
            sd = np.maximum(np.sqrt((n * ref.var(0) + kappa * self.sd ** 2) / (n + kappa)), EPS)
        if self.between is not None:
            k = (self.sd / self.between) ** 2  # kappa_d: the prior's weight in clips, per dimension
            mean = (ref.sum(0) + k * self.mean) / (n + k)
            return mean, (sd ** 2 + self.sd ** 2 / (n + k)) / sd
        if n == 0:
            return self.mean, self.sd
        return (n * ref.mean(0) + kappa * self.mean) / (n + kappa), sd

    def apply(self, x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """(..., d) float32: ``x`` standardised with (mean, sd), projected off the speaker subspace, then (with
        ``clip``) constant dimensions zeroed and values bounded to [-clip, clip]."""
        z = (np.asarray(x, dtype=np.float64) - mean) / sd
        if self.nap is not None:
            z = z - (z @ self.nap) @ self.nap.T
        if self.clip is not None:
            z = np.clip(np.where(self.live, z, 0.0), -self.clip, self.clip)
        return z.astype(np.float32)


def standardise(features: np.ndarray, speakers: Sequence[str], sets: Dict[str, np.ndarray], prior: Prior,
                kappa: float = 0.0) -> np.ndarray:
    """(N, d) float32: every row standardised with its speaker's statistics over the rows ``sets[speaker]`` of
    ``features`` (:func:`reference_sets`), shrunk towards ``prior`` with weight ``kappa``. Raises KeyError naming
    a speaker without a reference set."""
    x = np.asarray(features, dtype=np.float64)
    out = np.empty(x.shape, dtype=np.float32)
    rows_of: Dict[str, List[int]] = {}
    for i, s in enumerate(speakers):
        rows_of.setdefault(s, []).append(i)
    for s, rows in rows_of.items():
        if s not in sets:
            raise KeyError(f"speaker statistics: no reference set for speaker {s!r}")
        mean, sd = prior.stats(x[sets[s]], kappa)
        out[rows] = prior.apply(x[rows], mean, sd)
    return out
