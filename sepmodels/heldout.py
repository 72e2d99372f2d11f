"""What a prior gives its own held-out clips: the reference a clip's likelihood is read against.

A mean log-likelihood alone cannot tell "like this prior's clips" from "unlike anything it saw": a drum stem
can score more nats per sample under the toy sine flow than a toy sine does, because a density rewards quiet,
simple or smooth input as much as input of the right kind. Two things fix the reading:

- the *gain over a Gaussian of the clip's own loudness* (:func:`gain`): the mean log-likelihood per sample
  minus that of white Gaussian noise with the clip's power (plus the noise level's), which takes loudness out
  of the figure and keeps what the prior explains beyond it;
- the range of that gain on fresh clips of the prior's own source (:func:`heldout_ranges`): a clip outside it,
  in either direction, is out of distribution (:func:`outside`, :func:`verdict`).

The held-out clips are toy clips of a seed no benchmark, validation split or training stream uses
(:data:`HELDOUT_SEED`), each source's clips scored under its own prior at the same noise level. Priors of
music stems carry their ranges in their checkpoint, measured on sounding crops of the stems benchmark's
validation split (``python bench/stems_studies.py``). On a music
stem the shipped sine flow scores 2.5 to 2.7 nats per sample, above many toy sines, but gains -0.8 to 1.2
nats over the Gaussian against 1.9 to 3.9 for its own held-out clips.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch

from sepmodels import mixing
from sepmodels.data import toy

HELDOUT_SEED = 200  # toy_test_set seed of the held-out clips (benchmarks use 0-2, the validation split 100)
CLIPS = 32  # held-out clips per source
SECONDS = 0.25  # their length


@dataclass(frozen=True)
class HeldoutRange:
    """The gain over a Gaussian (:func:`gain`, nats per sample) that one prior gives its own source's held-out
    clips at noise level ``sigma``: lowest and highest."""

    low: float
    high: float
    clips: int
    sigma: float

    def contains(self, value: float) -> bool:
        """Whether ``value`` (a clip's gain) lies within the range. A fresh clip of the prior's own source falls
        outside the range of ``clips`` others with probability 2 / (clips + 1): about 1 in 16 for 32."""
        return self.low <= value <= self.high

    def describe(self) -> str:
        return f"{self.low:.3f} to {self.high:.3f}"


def gain(log_prob: torch.Tensor, clips: torch.Tensor, sigma: float) -> torch.Tensor:
    """Mean log-likelihood per sample of ``clips [..., T]`` (per-sample map ``log_prob [..., T]``) minus that
    of white Gaussian noise of the clip's own power plus ``sigma**2``: ``[...]``, nats per sample."""
    x = clips.double()
    power = x.square().mean(-1)
    var = power + float(sigma) ** 2
    reference = -0.5 * torch.log(2 * math.pi * var) - 0.5 * power / var
    return log_prob.double().mean(-1) - reference


def heldout_ranges(priors, sigma: float, clips: int = CLIPS, seconds: float = SECONDS) -> dict[str, HeldoutRange]:
    """``{source: HeldoutRange}``: each prior's :func:`gain`, lowest and highest, over ``clips`` held-out toy
    clips of its own source at noise level ``sigma``.

    Priors of other sources than the toy's give the ranges their checkpoint carries (:func:`stored_ranges`,
    written by ``python bench/stems_studies.py`` for the stems priors) when measured at ``sigma``; otherwise,
    and for priors without a likelihood, this raises ValueError.
    """
    names = tuple(priors.names)
    if names != tuple(toy.SOURCES):
        stored = stored_ranges(priors, sigma)
        if stored is None:
            raise ValueError(f"held-out clips are toy clips; these priors model {', '.join(names)} and carry no "
                             f"held-out ranges at sigma {sigma:g}")  # fmt: skip
        return stored
    if not priors.has_likelihood:
        raise ValueError("these priors give no likelihood")
    length = priors.valid_length(max(1, int(seconds * priors.sample_rate)))
    x = toy.toy_test_set(clips, length, seed=HELDOUT_SEED, sample_rate=priors.sample_rate)  # [B, N, T]
    return measure_ranges(priors, x, sigma)


def measure_ranges(
    priors, x: torch.Tensor, sigma: float, keep: torch.Tensor | None = None
) -> dict[str, HeldoutRange]:
    """``{source: HeldoutRange}`` of held-out clips ``x [B, N, T]`` whose column k holds clips of prior k's own
    source, each scored under its own prior at ``sigma``; ``keep [B, N]`` (bool) leaves out clips that do not
    count (a silent crop of a stem)."""
    if not priors.has_likelihood:
        raise ValueError("these priors give no likelihood")
    with torch.no_grad():
        per_clip = gain(priors.log_prob(x, sigma), x, sigma)  # [B, N]: each clip under its own prior
    keep = torch.ones_like(per_clip, dtype=torch.bool) if keep is None else keep
    if not torch.isfinite(per_clip[keep]).all():
        raise ValueError("the priors gave a non-finite log-likelihood on their own held-out clips")
    ranges = {}
    for k, name in enumerate(priors.names):
        values = per_clip[keep[:, k], k]
        if values.numel() == 0:
            raise ValueError(f"no held-out clip of {name} counts")
        ranges[name] = HeldoutRange(float(values.min()), float(values.max()), int(values.numel()), float(sigma))
    return ranges


def sounding_crops(solo: dict[str, torch.Tensor], names: tuple[str, ...], clips: int, length: int, seed: int,
                   quiet_db: float = -30.0) -> torch.Tensor:  # fmt: skip
    """``[clips, N, length]``: for each source of ``names`` crops of its solo audio ``solo[name] [T]`` at seeded
    places, skipping crops quieter than ``quiet_db`` below that audio's mean power (rests are not what a prior
    is judged on); column k holds source k's crops."""
    g = torch.Generator().manual_seed(seed)
    columns = []
    for name in names:
        audio = solo[name]
        if audio.shape[-1] < length:
            raise ValueError(f"the solo {name} audio is shorter than one clip ({audio.shape[-1]} < {length})")
        floor = float(audio.pow(2).mean()) * 10 ** (quiet_db / 10)
        crops = []
        for _ in range(100 * clips):
            start = int(torch.randint(audio.shape[-1] - length + 1, (1,), generator=g))
            crop = audio[start : start + length]
            if float(crop.pow(2).mean()) >= floor:
                crops.append(crop)
                if len(crops) == clips:
                    break
        if len(crops) < clips:
            raise ValueError(f"fewer than {clips} sounding crops of {name} in its solo audio")
        columns.append(torch.stack(crops))
    return torch.stack(columns, dim=1)


def stored_ranges(priors, sigma: float) -> dict[str, HeldoutRange] | None:
    """The held-out ranges a checkpoint carries (``meta["heldout"]``, see :func:`ranges_meta`) when they were
    measured at ``sigma`` for these priors' sources, else None."""
    stored = (getattr(priors, "meta", None) or {}).get("heldout")
    if not stored or abs(float(stored["sigma"]) - float(sigma)) > 1e-12 * max(1.0, float(sigma)):
        return None
    ranges = stored["ranges"]
    if set(ranges) != set(priors.names):
        return None
    return {n: HeldoutRange(float(ranges[n][0]), float(ranges[n][1]), int(stored["clips"]), float(sigma))
            for n in priors.names}  # fmt: skip


def ranges_meta(ranges: dict[str, HeldoutRange], where: str) -> dict:
    """What :func:`stored_ranges` reads back, for a checkpoint's meta; ``where`` says which clips they are."""
    first = next(iter(ranges.values()))
    return {"sigma": first.sigma, "clips": min(r.clips for r in ranges.values()), "where": where,
            "ranges": {n: [r.low, r.high] for n, r in ranges.items()}}  # fmt: skip


def outside(scores: dict[str, float], ranges: dict[str, HeldoutRange]) -> dict[str, str]:
    """``{source: "above" | "below"}`` for every gain in ``scores`` outside its prior's held-out range."""
    out = {}
    for name, value in scores.items():
        r = ranges.get(name)
        if r is None or not math.isfinite(value) or r.contains(value):
            continue
        out[name] = "above" if value > r.high else "below"
    return out


def verdict(scores: dict[str, float], ranges: dict[str, HeldoutRange]) -> str:
    """One sentence on a clip's gains (``{source: gain}``) against the held-out ranges: which prior's clips it
    is like, or that it is like none of them (the best score is then no evidence of the clip's kind)."""
    off = outside(scores, ranges)
    best = max(scores, key=scores.get)
    inside = [n for n in scores if n not in off]
    if not off:
        return f"Within every prior's held-out range; the best gain is {best}'s."
    if best not in off:
        return (f"Like the {best} prior's own clips (gain within its held-out range, {ranges[best].describe()}); "
                f"outside the range of {', '.join(off)}.")  # fmt: skip
    if not inside:
        return (f"Out of distribution: the gain lies outside every prior's held-out range, so the clip is "
                f"unlike every source these priors model, and the best score ({best}) does not make it a "
                f"{best}.")  # fmt: skip
    return (f"The best gain ({best}) lies {off[best]} its held-out range ({ranges[best].describe()}); within "
            f"their ranges: {', '.join(inside)}.")  # fmt: skip


def unsteadiness(x: torch.Tensor, sample_rate: int, n_fft: int = 2048, detrend: bool = False) -> float:
    """How much a clip's sound changes over time: the mean absolute deviation of its semitone band energies
    (from 50 Hz) across frames of ``n_fft`` samples (half overlapping), relative to their mean, weighted by
    energy. Steady oscillators score near 0 (two partials beating within one band add some); music, with
    notes that start, move and stop, scores several tenths or more.

    ``detrend``: for notes that may decay and waver (the moving toy), what is left once each band's log-energy
    loses its own straight line over time (a decay), in bands of 4 semitones (a vibrato stays inside), the line
    and the mean weighted by energy: nats, near 0 for decaying and vibrating oscillators, several tenths for
    notes that start and stop."""
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1)
    if x.numel() < 2 * n_fft:
        x = torch.nn.functional.pad(x, (0, 2 * n_fft - x.numel()))
    power = torch.stft(x, n_fft, n_fft // 2, window=torch.hann_window(n_fft), center=False,
                       return_complex=True).abs().square()  # fmt: skip
    freq = torch.arange(power.shape[0]) * sample_rate / n_fft
    edges = 50.0 * 2.0 ** (torch.arange(0, 192, 4 if detrend else 1) / 12)
    edges = edges[edges < sample_rate / 2]
    bands = torch.stack(
        [power[(freq >= lo) & (freq < hi)].sum(0) for lo, hi in itertools.pairwise(edges.tolist())]
    )
    if not detrend:
        mean = bands.mean(1, keepdim=True)
        return float((bands - mean).abs().mean(1).sum() / mean.sum().clamp_min(1e-20))
    bands = bands.double()
    log = (bands + bands.max().clamp_min(1e-30) * 1e-8).log()
    t = torch.arange(bands.shape[1], dtype=torch.float64)[None]
    w = bands / bands.sum(1, keepdim=True).clamp_min(1e-300)  # each band's line weighted by its energy
    tm, ym = (w * t).sum(1, keepdim=True), (w * log).sum(1, keepdim=True)
    slope = (w * (t - tm) * (log - ym)).sum(1, keepdim=True) / (w * (t - tm).square()).sum(1, keepdim=True)
    left = (log - ym - slope * (t - tm)).abs()
    return float((bands * left).sum() / bands.sum().clamp_min(1e-300))


@functools.lru_cache(maxsize=16)
def toy_mix_unsteadiness(
    length: int, sample_rate: int = toy.SAMPLE_RATE, clips: int = CLIPS, variants: tuple[str, ...] = ("keys",)
) -> float:
    """The most :func:`unsteadiness` among ``clips`` held-out toy mixes of ``length`` samples (at most 10 s) of
    each toy variant in ``variants``; computed once per length, rate and variants (every upload and every
    ``separate`` asks)."""
    length = max(1, min(length, 10 * sample_rate))
    most = 0.0
    for variant in variants:
        mixes = toy.toy_test_set(clips, length, seed=HELDOUT_SEED, sample_rate=sample_rate, options=variant)
        most = max(
            most, max(unsteadiness(mixing.mix(c), sample_rate, detrend=variants_move(variants)) for c in mixes)
        )
    return most


def variants_move(variants: tuple[str, ...]) -> bool:
    """Whether any of the toy variants has notes that move (then :func:`unsteadiness` detrends)."""
    return any(toy.toy_options(v).moves for v in variants)


def toy_variants(priors: object) -> tuple[str, ...]:
    """The toy variants priors were fitted on (``meta["variants"]`` of the harmonic priors), else the on-key
    toy."""
    variants = (getattr(priors, "meta", None) or {}).get("variants")
    return tuple(sorted(variants)) if variants else ("keys",)


def toy_priors_note(
    mix: torch.Tensor,
    sample_rate: int,
    advice: str = "for music use --priors stems",
    variants: tuple[str, ...] = ("keys",),
) -> str | None:
    """A sentence when ``mix`` is unlike every toy mix of ``variants`` (the toy the priors were fitted on, see
    :func:`toy_variants`), else None. The clip is called unlike when its :func:`unsteadiness` is more than 1.5
    times the most of the held-out toy mixes of its length; ``python bench/wrong_priors.py`` measures how often
    that is right."""
    moves = variants_move(tuple(variants))
    value = unsteadiness(mix, sample_rate, detrend=moves)
    most = toy_mix_unsteadiness(int(torch.as_tensor(mix).numel()), sample_rate, variants=tuple(variants))
    if value <= 1.5 * most:
        return None
    if moves:
        return (
            f"this clip's sound changes over time ({value:.2f}, the deviation of its band energies from each "
            f"band's own decay, nats) far more than any toy mix (at most {most:.2f} on {CLIPS} held-out "
            "mixes of each toy variant): the toy priors model four oscillators, steady or with the toy's "
            f"vibrato and decays, and will name whatever they find sin, square, saw and triangle; {advice}"
        )
    return (f"this clip's sound changes over time ({value:.2f}, the relative deviation of its band energies "
            f"across frames) far more than any toy mix (at most {most:.2f} on {CLIPS} held-out mixes): the toy "
            f"priors model four steady oscillators and will name whatever they find sin, square, saw and "
            f"triangle; {advice}")  # fmt: skip


def stems_priors_note(mix: torch.Tensor, sample_rate: int) -> str | None:
    """A sentence when ``mix`` is as steady as a toy mix (the music models were trained on songs), else None."""
    value = unsteadiness(mix, sample_rate)
    most = toy_mix_unsteadiness(int(torch.as_tensor(mix).numel()), sample_rate)
    if value > most:
        return None
    return (
        f"this clip is as steady as a toy mix ({value:.2f}, at most {most:.2f} for toy mixes): the stems "
        "models were trained on songs (drums, bass, other, vocals); for toy oscillators use the default "
        "priors"
    )


__all__ = [
    "CLIPS",
    "HELDOUT_SEED",
    "HeldoutRange",
    "gain",
    "heldout_ranges",
    "outside",
    "stems_priors_note",
    "toy_mix_unsteadiness",
    "toy_priors_note",
    "toy_variants",
    "unsteadiness",
    "variants_move",
    "verdict",
]
