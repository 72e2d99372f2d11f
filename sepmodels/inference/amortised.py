"""An amortised posterior over source models' parameters: one network pass reads each source's note off the mix.

The per-sample VAE (:mod:`sepmodels.inference.posterior`) must write every sample of every source, and never
separated (README, "The VAE posterior"). This posterior's output is the parameters of the harmonic priors'
source model (:mod:`sepmodels.sources.harmonic`): for every source, which pitch bin its note starts in (the
priors' own density bins, a quarter of a semitone). The rest of the note, its exact pitch track, phase and
envelope, and whether it moves, is what the source model's demodulation and its Laplace criterion give for that
pitch (:func:`~sepmodels.sources.track.follow`, :meth:`~sepmodels.sources.harmonic.HarmonicPriors.prefer`), so
the encoder never has to hit a phase or a pitch to a fraction of a hertz, which a network cannot.

**The network** (:class:`PitchEncoder`) reads the mix's spectrum on the priors' pitch grid with its first
:data:`HARMONICS` partials stacked as channels (:func:`pitch_features`: for every bin, the largest and the
root-mean-square magnitude where each partial of a note in that bin falls) and gives, per source, logits over
the bins. Convolutions along log-frequency: a note's pattern is the same at every pitch.

**Decoding** (:meth:`AmortisedPosterior.decode`): each source's bin is refined to the peak of its own harmonic
salience inside it, the note followed through the whole mix from there as a steady note, then
:attr:`~AmortisedPosterior.rounds` passes follow each in what the others leave (the continuous parameters'
joint fit given the pitches). Where two sources read the same bin, the two readings are both decoded
(:meth:`~AmortisedPosterior.readings`). Optional *reading sweeps* after the pass
(:meth:`~AmortisedPosterior.sweep`) search the pitches further: other bins for each source, each decoded and
judged by the priors' criterion of the whole mix.

**Training** on no labelled data, two phases (the shipped posterior is the first alone: the second was measured
not to help, README):

1. *Sleep* (the wake-sleep algorithm's update of the encoder): mixes drawn from the priors themselves, whose
   notes are known, teach the encoder by cross-entropy; this minimises KL(p(z | x) || q(z | x)) averaged over
   the model's own mixes.
2. *The ELBO* on unlabelled mixes: ``E_q[log p(x | z)] + E_q[log p(z)] + H(q)``, ``p(x | z)`` Gaussian about
   the sum of the decoded notes. For each source it is the ELBO of its categorical with the other sources held
   at the pass's reading (:func:`mix_elbo`): each candidate note is followed in what the others leave, and the
   sum over the source's bins is taken exactly over a support (the encoder's top bins, the priors' own salience
   candidates, which lets the ELBO find a pitch the encoder missed, and the reading's bin), renormalised there:
   an exact sum on a truncated posterior, not a gradient estimator, since a pitch is a choice among few
   candidates and the exact sum has no variance.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from sepmodels import mixing
from sepmodels.checkpoint import CheckpointError, first_line, load_checkpoint, save_checkpoint
from sepmodels.inference.langevin import Iterate, LangevinConfig, langevin
from sepmodels.metrics import si_sdr
from sepmodels.sources.harmonic import HarmonicPriors, magnitude_spectrum, spread_spectrum
from sepmodels.sources.track import Followed

CLASS = "AmortisedPosterior"
DEFAULT_AMORTISED = "toy_amortised.pt"
HARMONICS = 8  # partials stacked as the encoder's input channels
FLOOR = 1e-4  # the features' floor, relative to the clip's loudest bin
SUPPORT = 3  # the encoder's top bins per source that the ELBO sums over
SALIENT = 3  # and the priors' salience candidates added to them
MOTION_PASSES = 3  # passes of a decoding in which a note may change between steady and moving
APART = 1  # bins: two sources' readings at most this far apart are decoded both ways (AmortisedPosterior.readings)
# A reading sweep (AmortisedPosterior.sweep; chosen on the validation split, bench/amortised.py):
SWEEP_TOP = 3  # the encoder's likeliest bins per source it tries
SWEEP_SALIENT = 3  # and the priors' salience candidates in what the other sources leave
SCREEN_ROUNDS = 2  # joint-fit passes each tried reading gets before the readings are compared
POLISH_ROUNDS = 2  # joint-fit passes after each sweep


class Decoded(list):
    """The notes of a decoding (a list of :class:`~sepmodels.sources.track.Followed`, one per source), the pitch
    bins they were decoded from, each source's start pitches there (:meth:`AmortisedPosterior.pitches`) and how
    many passes made them."""

    def __init__(
        self, notes: list[Followed], bins: list[int], pitches: list[tuple[float, float | None]], passes: int
    ) -> None:
        super().__init__(notes)
        self.bins, self.pitches, self.passes = list(bins), pitches, passes


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of :class:`PitchEncoder`."""

    channels: int = 64
    layers: int = 6
    kernel: int = 5

    @staticmethod
    def preset(name: str) -> EncoderConfig:
        presets = {"default": EncoderConfig(), "tiny": EncoderConfig(channels=8, layers=2, kernel=3)}
        if name not in presets:
            raise ValueError(f"unknown encoder preset {name!r}; choose one of {', '.join(presets)}")
        return presets[name]


class PitchEncoder(nn.Module):
    """Stacked-partial features ``[B, 2 H, P]`` -> each source's pitch logits ``[B, N, P]``.

    Residual dilated convolutions along the pitch axis (dilations 1, 2, 4, 8, 16, then again from 1), so with
    the default sizes a bin sees about 64 bins (16 semitones) either side: whether its partials are another
    note's.
    """

    def __init__(self, sources: int, config: EncoderConfig) -> None:
        super().__init__()
        if sources < 1 or config.channels < 1 or config.layers < 1 or config.kernel % 2 == 0:
            raise ValueError(f"bad encoder sizes for {sources} sources: {config} (an odd kernel)")
        self.sources, self.config = sources, config
        c = config.channels
        self.inp = nn.Conv1d(2 * HARMONICS, c, 1)
        self.blocks = nn.ModuleList(
            nn.Conv1d(c, c, config.kernel, dilation=2 ** (i % 5), padding=(config.kernel // 2) * 2 ** (i % 5))
            for i in range(config.layers)
        )
        self.norms = nn.ModuleList(nn.GroupNorm(1, c) for _ in range(config.layers))
        self.head = nn.Conv1d(c, sources, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 3 or features.shape[1] != 2 * HARMONICS:
            raise ValueError(f"expected features [B, {2 * HARMONICS}, P], got {tuple(features.shape)}")
        h = self.inp(features)
        for conv, norm in zip(self.blocks, self.norms, strict=True):
            h = h + torch.nn.functional.gelu(conv(norm(h)))
        return self.head(h)


@functools.lru_cache(maxsize=8)
def _feature_index(F: int, sample_rate: int, edges: tuple[float, ...]) -> tuple[torch.Tensor, ...]:
    """For a one-sided spectrum of ``F`` bins and every partial h: the pitch bin each spectrum bin's frequency
    over h falls in (-1 outside), and the spectrum bin nearest each pitch bin's centre times h (-1 above
    Nyquist)."""
    n = 2 * (F - 1)
    hz = torch.arange(F, dtype=torch.float64) * sample_rate / n
    edge = torch.tensor(edges, dtype=torch.float64)
    P = len(edges) - 1
    centre = 2 ** ((edge[:-1] + edge[1:]) / 2)
    owner, nearest = [], []
    for h in range(1, HARMONICS + 1):
        bins = torch.bucketize(torch.log2((hz / h).clamp_min(1e-9)), edge) - 1
        owner.append(torch.where((bins >= 0) & (bins < P), bins, torch.full_like(bins, -1)))
        near = torch.round(h * centre * n / sample_rate).long()
        nearest.append(torch.where(near < F, near, torch.full_like(near, -1)))
    return torch.stack(owner), torch.stack(nearest)


def pitch_features(total: torch.Tensor, edges: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """The encoder's input for clips ``total [B, T]``: ``[B, 2 H, P]``, for partial h (channel h - 1 and
    H + h - 1) and pitch bin p the largest and the root-mean-square magnitude of the spectrum
    (:func:`~sepmodels.sources.harmonic.magnitude_spectrum`) where the h-th partial of a note in bin p falls,
    each at least the magnitude at the bin's centre's partial; log of their ratio to the clip's loudest bin,
    floored at :data:`FLOOR`. Level does not matter: a clip and a louder copy give the same features."""
    if total.dim() != 2:
        raise ValueError(f"expected clips [B, T], got {tuple(total.shape)}")
    B = total.shape[0]
    spectrum = magnitude_spectrum(total.double())  # [B, F]
    owner, nearest = _feature_index(spectrum.shape[-1], int(sample_rate), tuple(float(e) for e in edges))
    spectrum = spectrum / spectrum.amax(-1, keepdim=True).clamp_min(1e-30)
    P = len(edges) - 1
    out = torch.full((B, 2 * HARMONICS, P), FLOOR, dtype=torch.float64)
    for h in range(HARMONICS):
        keep = owner[h] >= 0
        idx = owner[h][keep].expand(B, -1)
        values = spectrum[:, keep]
        peak = torch.zeros(B, P, dtype=torch.float64).scatter_reduce(1, idx, values, "amax", include_self=True)
        power = torch.zeros(B, P, dtype=torch.float64).scatter_add(1, idx, values.square())
        count = torch.zeros(P, dtype=torch.float64).scatter_add(
            0, owner[h][keep], torch.ones(int(keep.sum()), dtype=torch.float64)
        )
        inside = nearest[h] >= 0
        centre = torch.zeros(B, P, dtype=torch.float64)
        centre[:, inside] = spectrum[:, nearest[h][inside]]
        out[:, h] = torch.maximum(peak, centre)
        out[:, HARMONICS + h] = torch.maximum((power / count.clamp_min(1)).sqrt(), centre)
    return out.clamp_min(FLOOR).log().float()


class AmortisedPosterior:
    """The amortised posterior: a :class:`PitchEncoder` over the parameters of ``priors`` (harmonic priors).

    Arguments:
        encoder: the network.
        priors: the harmonic priors whose parameters it reads (they decode them, and are the ELBO's prior).
        meta: how it was trained.
        rounds: passes of the joint fit at the encoder's pitches (:meth:`decode`).
        sweeps: reading sweeps after the pass in :meth:`separate` (:meth:`sweep`; 0, the default: the pass
            alone).

    It is a :class:`~sepmodels.inference.separator.Separator` (``separate --method vae``).
    """

    CLASS = CLASS
    ROUNDS = 5  # joint-fit passes after the first (chosen on the validation split, bench/amortised.py)
    mix = "mean"  # the mixes are the mean of the sources (the toy's)
    max_steps = 0  # one pass

    def __init__(
        self,
        encoder: PitchEncoder,
        priors: HarmonicPriors,
        meta: dict[str, Any] | None = None,
        rounds: int = ROUNDS,
        sweeps: int = 0,
    ) -> None:
        if not isinstance(priors, HarmonicPriors):
            raise TypeError(
                f"the amortised posterior reads harmonic priors' parameters, not {type(priors).__name__}"
            )
        if encoder.sources != len(priors):
            raise ValueError(f"the encoder reads {encoder.sources} sources, the priors have {len(priors)}")
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        if sweeps < 0:
            raise ValueError(f"sweeps must be >= 0, got {sweeps}")
        self.encoder, self.priors, self.rounds, self.sweeps = encoder, priors, int(rounds), int(sweeps)
        self.names, self.sample_rate = priors.names, priors.sample_rate
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.names)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def bins(self) -> int:
        return self.priors.pitch_log_prob.shape[1]

    def describe(self) -> str:
        swept = f", then {self.sweeps} reading sweep{'s' if self.sweeps > 1 else ''}" if self.sweeps else ""
        return f"amortised posterior (one encoder pass, {self.rounds} joint-fit rounds at its pitches{swept})"

    def valid_length(self, length: int) -> int:
        return self.priors.valid_length(length)

    def bin_hz(self, bins: torch.Tensor) -> torch.Tensor:
        """The centre (Hz) of pitch bins."""
        edges = self.priors.pitch_edges
        return 2 ** ((edges[bins] + edges[bins + 1]) / 2)

    # -- the pass -----------------------------------------------------------------------------------------------
    def features(self, total: torch.Tensor) -> torch.Tensor:
        return pitch_features(total, self.priors.pitch_edges, self.sample_rate)

    def encode(self, total: torch.Tensor) -> torch.Tensor:
        """The encoder's logits ``[B, N, P]`` over each source's pitch bin, for clips ``total [B, T]`` (the
        sum of the sources)."""
        return self.encoder(self.features(total))

    def refine(self, k: int, spectrum: torch.Tensor, b: int, moving: bool = False) -> float:
        """Source ``k``'s pitch (Hz) in bin ``b``: the peak of its harmonic salience within the bin, widened by
        half a bin each side (a note near an edge), on the spectrum spread over the priors' deviation for a
        moving note (``spectrum``: :func:`~sepmodels.sources.harmonic.magnitude_spectrum` of the mix)."""
        edges = self.priors.pitch_edges
        width = float(edges[b + 1] - edges[b])
        lo, hi = 2 ** (float(edges[b]) - width / 2), 2 ** (float(edges[b + 1]) + width / 2)
        step = self.sample_rate / (2 * (spectrum.numel() - 1))
        fft_bins = torch.arange(math.floor(lo / step), math.ceil(hi / step) + 1)
        fft_bins = fft_bins[(fft_bins > 0) & (fft_bins < spectrum.numel())]
        if moving:
            spectrum = spread_spectrum(spectrum, float(self.priors.deviation[k]))
        salience = self.priors.salience(k, spectrum, fft_bins)
        return float(fft_bins[int(salience.argmax())]) * step

    def can_move(self, k: int) -> bool:
        """Whether the priors let source ``k``'s notes move."""
        return float(self.priors.moving[k]) > 0 and float(self.priors.motion[k]) > 0

    def pitches(self, k: int, spectrum: torch.Tensor, b: int) -> tuple[float, float | None]:
        """Source ``k``'s start pitch (Hz) in bin ``b`` as a steady note and as a moving one (None when its notes
        do not move), :meth:`refine`-d on the mix's ``spectrum``."""
        moving = self.refine(k, spectrum, b, moving=True) if self.can_move(k) else None
        return self.refine(k, spectrum, b), moving

    def note(
        self, k: int, x: torch.Tensor, pitches: tuple[float, float | None], moving: bool | None = None
    ) -> Followed:
        """Source ``k``'s note followed through ``x [T]`` from its :meth:`pitches`, steady or moving, whichever
        the source model prefers (:meth:`~sepmodels.sources.harmonic.HarmonicPriors.prefer`), or as ``moving``
        says."""
        steady, moves = pitches
        fits = []
        if moving is not True or moves is None:
            fits.append(self.priors.follow(k, x, steady, moving=False))
        if moves is not None and moving is not False:
            fits.append(self.priors.follow(k, x, moves, moving=True))
        return self.priors.prefer(k, fits)

    def decode(
        self, total: torch.Tensor, bins: list[int], rounds: int | None = None, notes: Decoded | None = None
    ) -> Decoded:
        """Each source's note in ``total [T]`` (float64) given its pitch bin: followed in the whole mix, then
        ``rounds`` (default :attr:`rounds`) passes following each in what the others leave (the joint fit of the
        continuous parameters at these pitches). The first pass follows steady notes only; whether a note moves
        is chosen in the next :data:`MOTION_PASSES` - 1 and kept after them. ``notes``: a decoding of the same
        bins to go on from (its passes count; its pitches are reused, and ``bins`` is then its own)."""
        total = total.double()
        if notes is None:  # in the whole mix a moving fit drifts to a neighbouring note: steady first
            spectrum = magnitude_spectrum(total)
            pitches = [self.pitches(k, spectrum, bins[k]) for k in range(len(self))]
            first = [self.note(k, total, pitches[k], moving=False) for k in range(len(self))]
            notes = Decoded(first, bins, pitches, 1)
        else:
            notes = Decoded(notes, notes.bins, notes.pitches, notes.passes)
        pitches = notes.pitches
        for _ in range(self.rounds if rounds is None else rounds):
            for k in range(len(self)):
                rest = total - sum(n.wave for j, n in enumerate(notes) if j != k)
                keep = None if notes.passes < MOTION_PASSES else notes[k].motion > 0
                notes[k] = self.note(k, rest, pitches[k], keep)
            notes.passes += 1
        return notes

    @torch.no_grad()
    def read(self, mixture: torch.Tensor) -> torch.Tensor:
        """The encoder's pitch distribution of each source in ``mixture [T]``: ``[N, P]`` probabilities."""
        return torch.softmax(self.encode(mixture.double()[None] * len(self))[0].double(), -1)

    def readings(self, probs: torch.Tensor) -> list[list[int]]:
        """The pitch bins to decode from the encoder's ``probs [N, P]``: each source's likeliest, and where two
        sources read bins within :data:`APART` of each other, also the reading with the less confident of them
        on its likeliest bin clear of every other source. The encoder's categoricals are independent, so they
        cannot say that two notes rarely share a pitch; the decoding judges (:meth:`decode_best`)."""
        bins = probs.argmax(-1).tolist()
        out = [bins]
        N = len(bins)
        for i in range(N):
            for j in range(i + 1, N):
                if abs(bins[i] - bins[j]) > APART:
                    continue
                weak = i if float(probs[i, bins[i]]) < float(probs[j, bins[j]]) else j
                p = probs[weak].clone()
                for k in range(N):
                    if k != weak:
                        p[max(0, bins[k] - APART) : bins[k] + APART + 1] = -1.0
                other = list(bins)
                other[weak] = int(p.argmax())
                if other not in out:
                    out.append(other)
        return out

    def decode_best(self, total: torch.Tensor, readings: list[list[int]]) -> Decoded:
        """The decoding (:meth:`decode`) of whichever reading explains ``total [T]`` best (least squared error
        after one joint-fit pass; the best goes on from there)."""
        if len(readings) == 1:
            return self.decode(total, readings[0])
        first = min(self.rounds, 1)
        tried = [(bins, self.decode(total, bins, rounds=first)) for bins in readings]
        bins, notes = min(tried, key=lambda t: float((total.double() - sum(n.wave for n in t[1])).square().sum()))
        return self.decode(total, bins, rounds=self.rounds - first, notes=notes)

    def separate(self, mixture: torch.Tensor, truth: torch.Tensor | None = None) -> torch.Tensor:
        """The sources ``[N, T]`` of ``mixture [T]`` (float32; the Separator contract, ``truth`` unused)."""
        if mixture.dim() != 1:
            raise ValueError(f"mixture must be mono [T], got shape {tuple(mixture.shape)}")
        if not torch.isfinite(mixture).all():
            raise ValueError("the mixture holds NaN or infinite samples")
        self.valid_length(mixture.shape[-1])
        total, probs = mixture.double() * len(self), self.read(mixture)
        notes = self.decode_best(total, self.readings(probs))
        for _ in range(self.sweeps):
            notes = self.sweep(total, notes, probs)
        return torch.stack([n.wave for n in notes]).float()

    # -- sweeps after the pass ----------------------------------------------------------------------------------
    def log_joint(self, total: torch.Tensor, decodings: list[Decoded]) -> list[float]:
        """How well each decoding of ``total [T]`` explains it, as the priors judge a fit (:meth:`~sepmodels.
        sources.harmonic.HarmonicPriors.prefer`): the mix's Gaussian term at the noise level ``sigma^2 + e^2``
        (``e^2`` what the best of them leaves per sample, which dominates: ``sigma`` is the priors' per-source
        level) plus every note's log prior."""
        T = total.shape[-1]
        errors = [float((total.double() - sum(n.wave for n in notes)).square().sum()) for notes in decodings]
        level = self.priors.default_sigma**2 + min(errors) / T
        return [-e / (2 * level) + sum(self.priors.log_prior(k, n, T) for k, n in enumerate(notes))
                for e, notes in zip(errors, decodings, strict=True)]  # fmt: skip

    def sweep(self, total: torch.Tensor, notes: Decoded, probs: torch.Tensor) -> Decoded:
        """One reading sweep over a decoding ``notes`` of ``total [T]`` (the sum of the sources), the encoder's
        pitch distribution ``probs [N, P]`` (:meth:`read`): every source's reading is replaced, one source at a
        time, by each of its :data:`SWEEP_TOP` likeliest bins and the bins of the priors' :data:`SWEEP_SALIENT`
        strongest salience candidates in what the other notes leave; each such reading is decoded afresh
        (:data:`SCREEN_ROUNDS` joint-fit passes, the current reading likewise), and the one with the highest
        :meth:`log_joint` is kept and decoded on to :attr:`rounds` passes; then :data:`POLISH_ROUNDS` more.

        Steepest ascent over the discrete parameters, the continuous ones decoded: it repairs a note the encoder
        read wrong where the priors' fit of the whole mix says so, which the priors' own residual sweep, whose
        candidates at low noise are the current note's neighbours, cannot. Only the best change is made, not the
        first that helps, because a source moved first onto a note read wrong elsewhere (a sine onto a
        triangle's fundamental) explains the mix better than before and would stay there."""
        total = total.double()
        tried = {tuple(notes.bins): self.decode(total, notes.bins, rounds=SCREEN_ROUNDS)}
        for k in range(len(self)):
            rest = total - sum(n.wave for j, n in enumerate(notes) if j != k)
            hz = self.priors.candidate_pitches(k, rest, count=SWEEP_SALIENT)
            candidates = probs[k].topk(SWEEP_TOP).indices.tolist() + (
                bin_of(self.priors, hz).tolist() if len(hz) else []
            )
            for b in candidates:
                bins = tuple(b if j == k else c for j, c in enumerate(notes.bins))
                if bins not in tried:
                    tried[bins] = self.decode(total, list(bins), rounds=SCREEN_ROUNDS)
        scores = self.log_joint(total, list(tried.values()))
        best = list(tried)[max(range(len(scores)), key=scores.__getitem__)]
        if list(best) != notes.bins:
            notes = self.decode(total, list(best), rounds=max(self.rounds - SCREEN_ROUNDS, 0), notes=tried[best])
        return self.decode(total, notes.bins, rounds=POLISH_ROUNDS, notes=notes)

    def sweep_config(self, sweeps: int) -> LangevinConfig:
        """The harmonic priors' residual sweep that refines a pass: ``sweeps`` levels of one sweep each, from the
        priors' restart level down to sigma_min, one chain."""
        own = self.priors.sampler_defaults["residual"]
        return LangevinConfig(method="residual", sigma_max=float(own["restart_sigma"]), levels=sweeps, steps=1,
                              chains=1)  # fmt: skip

    def iterates(
        self, mixture: torch.Tensor, sweeps: int | LangevinConfig = 0, truth: torch.Tensor | None = None
    ) -> Iterator[Iterate]:
        """The pass on ``mixture [T]`` as an :class:`~sepmodels.inference.langevin.Iterate` (step 1), then the
        priors' residual sweep started at it, numbered on from there: what an app shows step by step.
        ``sweeps``: how many (:meth:`sweep_config`), or the sweep's own settings. ``truth [N, T]`` adds SI-SDR."""
        config = self.sweep_config(sweeps) if isinstance(sweeps, int) and sweeps > 0 else sweeps or None
        sources = self.separate(mixture).to(mixture.dtype)
        total = 1 + (config.total_steps if config is not None else 0)
        error = float((mixing.mix(sources, self.mix) - mixture).square().mean().sqrt())
        sdr = None if truth is None else si_sdr(sources, truth)
        yield Iterate(1, total, 0, float(self.priors.default_sigma), sources, None, error, sdr)
        if config is not None:
            for it in langevin(mixture, self.priors, config, truth, start=sources):
                yield dataclasses.replace(it, step=it.step + 1, total=total if it.chain >= 0 else it.total + 1)

    # -- files ----------------------------------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        return {
            "class": CLASS,
            "config": asdict(self.encoder.config),
            "state_dict": self.encoder.state_dict(),
            "priors": self.priors.payload(),
            "sources": list(self.names),
            "sample_rate": self.sample_rate,
            "rounds": self.rounds,
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, self.payload())

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], where: str = "checkpoint") -> AmortisedPosterior:
        if ckpt.get("class") != CLASS:
            raise CheckpointError(
                f"{where} holds a {ckpt.get('class')!r}, not an amortised posterior (sepmodels train-posterior)"
            )
        try:
            priors = HarmonicPriors.from_checkpoint(ckpt["priors"], where)
            encoder = PitchEncoder(len(priors), EncoderConfig(**ckpt["config"]))
            encoder.load_state_dict(ckpt["state_dict"])
            posterior = cls(encoder.eval().requires_grad_(False), priors, ckpt.get("meta"), int(ckpt["rounds"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(
                f"{where} does not match its own description ({first_line(err)[:120]})"
            ) from None
        return posterior

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> AmortisedPosterior:
        if torch.device(device).type != "cpu":
            raise ValueError(f"the amortised posterior runs on the CPU (its source models do), not on {device}")
        return cls.from_checkpoint(load_checkpoint(path), str(path))


def default_amortised_path() -> Path:
    """The amortised posterior shipped with the package (``sepmodels train-posterior``)."""
    from sepmodels.checkpoint import default_harmonic_priors_path

    return default_harmonic_priors_path().parent / DEFAULT_AMORTISED


def load_posterior(spec: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"):
    """``--posterior``: None or ``amortised`` for the shipped amortised posterior, ``per-sample`` for the shipped
    per-sample VAE (:class:`~sepmodels.inference.posterior.Demixer`), else a file holding either."""
    from sepmodels.inference.posterior import Demixer, default_posterior_path

    if spec is None or str(spec) == "amortised":
        return AmortisedPosterior.load(default_amortised_path())
    if str(spec) == "per-sample":
        return Demixer.load(default_posterior_path(), device=device)
    ckpt = load_checkpoint(spec)
    if ckpt.get("class") == Demixer.CLASS:
        demixer = Demixer.from_checkpoint(ckpt, str(spec))
        demixer.encoder.to(device)
        return demixer
    if ckpt.get("class") != CLASS:
        raise CheckpointError(
            f"{spec} holds a {ckpt.get('class')!r}, not a posterior (train-posterior, or train --model vae)"
        )
    return AmortisedPosterior.from_checkpoint(ckpt, str(spec))


# -- training ---------------------------------------------------------------------------------------------------
def bin_of(priors: HarmonicPriors, hz: torch.Tensor) -> torch.Tensor:
    """The pitch bin of each pitch (Hz), clamped to the grid."""
    P = priors.pitch_log_prob.shape[1]
    return (torch.bucketize(torch.log2(hz.double()), priors.pitch_edges) - 1).clamp(0, P - 1)


def sleep_loss(posterior: AmortisedPosterior, batch: int, length: int, generator: torch.Generator,
               sigma: float = 0.01) -> tuple[torch.Tensor, float]:  # fmt: skip
    """One sleep step's loss: mixes drawn from the priors (plus noise of level ``sigma`` on the mean), the
    encoder's cross-entropy on their notes' bins; and the share of bins it gets right."""
    priors = posterior.priors
    drawn = priors.draw(batch, length, generator)
    noise = sigma * len(priors) * torch.randn(batch, length, generator=generator, dtype=torch.float64)
    logits = posterior.encode(drawn.clips.sum(1) + noise)
    target = bin_of(priors, drawn.hz)  # [B, N]
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
    return loss, float((logits.argmax(-1) == target).double().mean())


@dataclass
class ELBOParts:
    """The ELBO of mixes and its terms, nats per sample of the mix (means over the batch): ``fit`` is
    ``E_q log p(x | z)``, ``prior`` ``E_q log p(z)``, ``entropy`` ``H(q)`` (its truncation to the support)."""

    elbo: torch.Tensor
    fit: torch.Tensor
    prior: torch.Tensor
    entropy: torch.Tensor


@dataclass
class Support:
    """What the ELBO sums over for one source of one mix: the ``bins [M]`` it may be in, the note each stands for
    (``waves [M, T]``, float64, followed in ``rest``) and ``rest [T]``, what the other sources' decoded notes leave
    of the mix."""

    bins: torch.Tensor
    waves: torch.Tensor
    rest: torch.Tensor


@dataclass
class Reading:
    """The pass's answer on one mix, which the ELBO of each source holds the others at: the decoded ``bins``
    and ``notes``."""

    bins: list[int]
    notes: list[Followed]


@torch.no_grad()
def supports(
    posterior: AmortisedPosterior,
    total: torch.Tensor,
    logits: torch.Tensor,
    extra: dict[int, list[int]] | None = None,
) -> tuple[Reading, list[Support]]:
    """The pass's reading of the mix ``total [T]`` (the sum of the sources) from the encoder's ``logits [N, P]``,
    and each source's support: the encoder's :data:`SUPPORT` likeliest bins, the bins of the priors'
    :data:`SALIENT` strongest salience candidates in what the other sources' decoded notes leave, the reading's
    own bin and ``extra`` bins, each bin's note followed there (:meth:`AmortisedPosterior.note`)."""
    priors = posterior.priors
    for k, extra_bins in (extra or {}).items():
        if not 0 <= k < len(posterior) or any(not 0 <= b < posterior.bins for b in extra_bins):
            raise ValueError(
                f"extra bins must name a source and bins 0 to {posterior.bins - 1}, got {k}: {extra_bins}"
            )
    probs = torch.softmax(logits.double(), -1)
    readings = posterior.readings(probs)
    notes = posterior.decode_best(total, readings)
    bins = notes.bins
    spectrum = magnitude_spectrum(total)
    out = []
    for k in range(len(posterior)):
        rest = total - sum(n.wave for j, n in enumerate(notes) if j != k)
        chosen = set(logits[k].topk(min(SUPPORT, logits.shape[-1])).indices.tolist()) | {bins[k]}
        chosen |= set((extra or {}).get(k, []))
        for hz in priors.candidate_pitches(k, rest, SALIENT).tolist():
            chosen.add(int(bin_of(priors, torch.tensor(hz))))
        chosen_bins = torch.tensor(sorted(chosen))
        waves = [posterior.note(k, rest, posterior.pitches(k, spectrum, int(z))).wave for z in chosen_bins]
        out.append(Support(chosen_bins, torch.stack(waves), rest))
    return Reading(bins, list(notes)), out


def mix_elbo(
    posterior: AmortisedPosterior,
    total: torch.Tensor,
    logits: torch.Tensor,
    reading: Reading,
    support: list[Support],
    sigma: float = 0.01,
) -> ELBOParts:
    """The ELBO of one mix ``total [T]`` (the sum of the sources), nats per sample, averaged over the sources:
    for source k, the ELBO of the posterior that is ``softmax(logits[k])`` truncated to its ``support`` for k and
    a point mass at the ``reading`` for the others (their decoded notes held). Its terms: the Gaussian likelihood
    of the mix about the notes' sum (``E_q ||rest_k - s_k||^2``, exact over the support) at the noise level the
    reading leaves (at least ``sigma`` per source), the priors' log-probability of all the bins, and the
    categorical's entropy. Differentiable in ``logits``."""
    priors, N, T = posterior.priors, len(posterior), total.shape[-1]
    with torch.no_grad():
        left = total - sum(n.wave for n in reading.notes)
        level = max(float(left.square().mean()), (sigma * N) ** 2)
        held = [float(priors.pitch_log_prob[k, b]) for k, b in enumerate(reading.bins)]
    fits, priors_t, entropies = [], [], []
    for k, s in enumerate(support):
        q = torch.softmax(logits[k, s.bins].double(), 0)
        error = (q * (s.rest - s.waves).square().sum(-1)).sum()
        fits.append(-error / (2 * level) / T - 0.5 * math.log(2 * math.pi * level))
        priors_t.append(((q * priors.pitch_log_prob[k, s.bins]).sum() + sum(held) - held[k]) / T)
        entropies.append(-(q * q.clamp_min(1e-30).log()).sum() / T)
    fit, prior, entropy = (torch.stack(v).mean() for v in (fits, priors_t, entropies))
    return ELBOParts(fit + prior + entropy, fit, prior, entropy)


def elbo(posterior: AmortisedPosterior, mixtures: torch.Tensor, sigma: float = 0.01) -> ELBOParts:
    """The mean ELBO of the mixes ``mixtures [B, T]`` (means of the sources), differentiable in the encoder's
    weights (:func:`mix_elbo` over :func:`supports`)."""
    totals = mixtures.double() * len(posterior)
    logits = posterior.encode(totals)
    parts = []
    for x, z in zip(totals, logits, strict=True):
        reading, support = supports(posterior, x, z.detach())
        parts.append(mix_elbo(posterior, x, z, reading, support, sigma))
    fields = ("elbo", "fit", "prior", "entropy")
    return ELBOParts(*(torch.stack([getattr(p, f) for p in parts]).mean() for f in fields))


def train_posterior(
    priors: HarmonicPriors,
    sleep_steps: int,
    elbo_steps: int,
    mixtures: torch.Tensor | None = None,
    config: EncoderConfig | None = None,
    batch: int = 32,
    elbo_batch: int = 4,
    length: int | None = None,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    log: list[dict[str, float]] | None = None,
    init: AmortisedPosterior | None = None,
) -> AmortisedPosterior:
    """Train an amortised posterior over ``priors``: ``sleep_steps`` steps on mixes drawn from the priors, then
    ``elbo_steps`` on the unlabelled ``mixtures [M, T]`` (means of the sources; needed when elbo_steps > 0),
    ``elbo_batch`` per step. ``log`` receives one row per step. ``init``: a posterior over the same priors to go
    on from (a copy is trained; ``config`` is then its own)."""
    if sleep_steps < 0 or elbo_steps < 0 or sleep_steps + elbo_steps == 0:
        raise ValueError("train for at least one step (sleep_steps and elbo_steps >= 0)")
    if elbo_steps and (mixtures is None or mixtures.dim() != 2 or len(mixtures) == 0):
        raise ValueError("the ELBO phase needs unlabelled mixtures [M, T]")
    length = length or (mixtures.shape[-1] if mixtures is not None else priors.sample_rate)
    priors.valid_length(length)
    generator = torch.Generator().manual_seed(seed)
    if init is not None:
        if init.priors.pitch_edges.shape != priors.pitch_edges.shape or init.names != priors.names:
            raise ValueError("the posterior to go on from reads other priors' parameters")
        encoder = PitchEncoder(len(priors), init.encoder.config)
        encoder.load_state_dict(init.encoder.state_dict())
    else:
        with torch.random.fork_rng():  # the encoder's initial weights from the seed; the caller's stream untouched
            torch.manual_seed(seed)
            encoder = PitchEncoder(len(priors), config or EncoderConfig())
    rounds = init.rounds if init is not None else AmortisedPosterior.ROUNDS
    posterior = AmortisedPosterior(encoder.requires_grad_(True), priors, rounds=rounds)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=lr)
    encoder.train()
    bar = tqdm(total=sleep_steps + elbo_steps, desc="train amortised posterior", disable=not progress)
    for step in range(sleep_steps):
        lr_now = lr * 0.5 * (1 + math.cos(math.pi * step / sleep_steps))
        for group in optimiser.param_groups:
            group["lr"] = lr_now
        loss, right = sleep_loss(posterior, batch, length, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        value = loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}", right=f"{right:.2f}")
        if log is not None:
            log.append({"phase": "sleep", "step": step, "loss": value, "right": right})
    for group in optimiser.param_groups:  # the ELBO phase fine-tunes
        group["lr"] = lr / 10 if sleep_steps or init is not None else lr
    for step in range(elbo_steps):
        pick = torch.randint(0, len(mixtures), (elbo_batch,), generator=generator)
        parts = elbo(posterior, mixtures[pick])
        optimiser.zero_grad()
        (-parts.elbo).backward()
        optimiser.step()
        bar.update(1)
        values = {name: getattr(parts, name).item() for name in ("elbo", "fit", "prior", "entropy")}
        bar.set_postfix(elbo=f"{values['elbo']:.3f}")
        if log is not None:
            log.append({"phase": "elbo", "step": step, **values})
    bar.close()
    encoder.eval().requires_grad_(False)
    return posterior


__all__ = [
    "AmortisedPosterior",
    "ELBOParts",
    "EncoderConfig",
    "PitchEncoder",
    "Support",
    "default_amortised_path",
    "elbo",
    "load_posterior",
    "mix_elbo",
    "pitch_features",
    "sleep_loss",
    "supports",
    "train_posterior",
]
