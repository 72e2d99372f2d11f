"""Amortisation on music: an encoder that reads each stem's NMF activations off the mix, against KL-NMF's fit.

    python bench/amortised_music.py --root /work/stemsbench          # trains the encoder here, then measures
    python bench/amortised_music.py --root DIR --steps 200 --quick   # a quick look (2 clips per condition)
    python bench/amortised_music.py --model frames                   # the frame priors' latents instead

The stems benchmark's source models with frame-wise parameters are the shipped KL-NMF dictionaries
(``stems_nmf.pt``: one dictionary per stem, learned on that stem's solo audio). KL-NMF separates by fitting
their activations to each mix by multiplicative updates (200 of them). The amortised version reads them off the
mix in one pass: a small convolutional network over the mix's log-magnitude frames gives every atom's
activation in every frame, trained on the training split's *mixtures* alone (no stem) to minimise the same
Kullback-Leibler divergence between the mix's magnitude and the dictionaries' sum; the estimates are the same
masks. Rows: one pass, one pass then k multiplicative updates (started at its activations), and KL-NMF from
scratch, on the validation and test clips of both conditions (the training soundfont and TimGM6mb); SI-SDRi
(dB, mean over the clips and stems) and seconds per 10 s clip on this machine. Writes
``docs/bench/amortised_music.json`` (or ``--out``).

``--model frames`` (``--ship``: and write the result into the shipped file) does the same for the best music
source models, the shipped frame priors
(``stems_frames.pt``: a VAE per stem over spectrum frames): the encoder reads every stem's latent and log-gain
in every frame off the mix, trained on the training mixtures alone to minimise the frame priors' own fit
objective (:meth:`sepmodels.frames.FramePriors.fit`: the mix's KL divergence from the stems' decoded sum, the
latents' prior and their smoothness), the VAEs frozen. Rows: one pass, one pass + k of the fit's Adam steps
started at it, the frame priors without an encoder (the fit's 300 steps from the NMF answer), the same k steps
from the NMF answer (what the encoder's start buys at equal cost), and KL-NMF. The number of steps after the
pass, or no encoder, is chosen on the validation split by the frame priors' criterion (the gain over KL-NMF in
the worse condition); ``--ship`` writes the choice into the shipped ``stems_frames.pt`` (the encoder at half
precision, as trained and measured) and its validation figures into the stems choice. Writes
``docs/bench/amortised_frames.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepmodels.data.stems import (  # noqa: E402
    BENCHMARK_ROOT,
    STEMS,
    StemsBenchmark,
    benchmark_clips,
    read_stems,
    render_benchmark,
    track_folders,
)
from sepmodels.evaluation import evaluate_stems  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402
from sepmodels.frames import (  # noqa: E402
    FrameConfig,
    FrameEncoder,
    FramePriors,
    FramePriorSeparator,
    shipped_path,
    train_frame_encoder,
)
from sepmodels.nmf import StemDictionaries  # noqa: E402
from sepmodels.spectral import mask_mixture, stft  # noqa: E402
from sepmodels.stems_choice import write_choice  # noqa: E402


class ActivationEncoder(nn.Module):
    """Log-magnitude frames ``[B, bins, frames]`` -> nonnegative activations ``[B, atoms, frames]`` (every
    stem's atoms), relative to the clip's mean magnitude (level in, level out)."""

    def __init__(self, bins: int, atoms: int, channels: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.inp = nn.Conv1d(bins, channels, 1)
        self.blocks = nn.ModuleList(nn.Conv1d(channels, channels, 5, padding=2) for _ in range(layers))
        self.out = nn.Conv1d(channels, atoms, 1)

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        scale = mag.mean((1, 2), keepdim=True).clamp_min(1e-8)
        h = self.inp(torch.log1p(mag / scale))
        for conv in self.blocks:
            h = h + torch.nn.functional.gelu(conv(h))
        return torch.nn.functional.softplus(self.out(h)) * scale


class _Flat(nn.Module):
    """Every activation the same (scikit-learn's start for a fixed dictionary): the reference for a start."""

    def __init__(self, atoms: int) -> None:
        super().__init__()
        self.atoms = atoms

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        level = (mag.mean((1, 2), keepdim=True) / self.atoms).sqrt()
        return level.expand(mag.shape[0], self.atoms, mag.shape[-1]).clone()


def kl(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Generalised Kullback-Leibler divergence ``sum X log(X / Y) - X + Y``, per element (mean)."""
    Y = Y.clamp_min(1e-8)
    return (torch.xlogy(X, X) - X * Y.log() - X + Y).mean()


def train_encoder(
    mixtures: list[torch.Tensor], dicts: StemDictionaries, steps: int, seconds: float = 3.0, batch: int = 8,
    seed: int = 0, lr: float = 3e-4,
) -> tuple[ActivationEncoder, list[float]]:  # fmt: skip
    """The encoder trained on random crops of ``mixtures`` (each ``[T]``) to minimise KL(|X| || A D)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    N, K, bins = dicts.dictionaries.shape
    D = dicts.dictionaries.reshape(N * K, bins)
    enc = ActivationEncoder(bins, N * K)
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    length = int(seconds * dicts.sample_rate)
    losses = []
    for step in range(steps):
        crops = []
        for _ in range(batch):
            m = mixtures[int(torch.randint(0, len(mixtures), (1,), generator=g))]
            start = int(torch.randint(0, m.shape[-1] - length, (1,), generator=g))
            crops.append(m[start : start + length])
        X = stft(torch.stack(crops), dicts.config.stft).abs()  # [B, bins, frames]
        A = enc(X)
        loss = kl(X, torch.einsum("bkf,kn->bnf", A, D))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == steps - 1:
            print(f"  step {step}: KL {np.mean(losses[-50:]):.4f}", flush=True)
    return enc.eval().requires_grad_(False), losses


def amortised_parts(enc: nn.Module, dicts: StemDictionaries, updates: int = 0):
    """``parts(X [bins, frames]) -> [N, bins, frames]``: each stem's modelled magnitude of a mix's magnitude
    ``X``, from the encoder's activations then ``updates`` multiplicative updates of KL-NMF started at them, the
    dictionaries frozen. (The updates are written out here: scikit-learn's ``non_negative_factorization``
    ignores a given start of the activations when the dictionary is fixed.)"""
    N, K, bins = dicts.dictionaries.shape
    D = dicts.dictionaries.reshape(N * K, bins)

    def parts(X: torch.Tensor) -> torch.Tensor:
        A = enc(X[None])[0]  # [atoms, frames]
        for _ in range(updates):  # KL-NMF's multiplicative update of the activations, the dictionaries fixed
            A = A * (D @ (X / (D.T @ A).clamp_min(1e-8))) / D.sum(1, keepdim=True).clamp_min(1e-8)
        return torch.einsum("kf,kn->knf", A, D).reshape(N, K, bins, -1).sum(1)

    return parts


def separator(parts, dicts: StemDictionaries):
    """``separate(mixture [T]) -> [N, T]``: each stem's modelled magnitude (``parts``) a mask of the mix."""

    def separate(mixture: torch.Tensor) -> torch.Tensor:
        spec = stft(mixture.float(), dicts.config.stft)
        return mask_mixture(mixture.float(), parts(spec.abs()), dicts.config.stft, dicts.config.power, spec)

    return separate


def measure(report: dict, rows: dict, clips: dict, split: str, rate: int, width: int) -> None:
    """Every row's SI-SDRi on ``clips`` (condition -> clips) into ``report["rows"][row]["{split} {condition}"]``,
    each printed as it comes."""
    for name, separate in rows.items():
        entry = report["rows"].setdefault(name, {})
        for condition, items in clips.items():
            s = evaluate_stems(lambda st, f=separate: f(st.sum(0)), items, STEMS, rate, bss=False).summary()
            entry[f"{split} {condition}"] = {"si_sdri_mean": round(s["si_sdri_mean"], 2),
                                             "si_sdri": {k: round(v, 2) for k, v in s["si_sdri"].items()},
                                             "seconds_per_clip": round(s["seconds_per_clip"], 2)}  # fmt: skip
            print(f"{split:<6}{condition:<12}{name:<{width}} SI-SDRi {s['si_sdri_mean']:6.2f} dB ("
                  + ", ".join(f"{k} {v:.1f}" for k, v in s["si_sdri"].items())
                  + f")  {s['seconds_per_clip']:.2f} s/clip", flush=True)  # fmt: skip


def frames_separator(priors: FramePriors, encoder: FrameEncoder | None, steps: int):
    """``separate(mixture [T]) -> [N, T]``: the frame priors' separation started at the encoder's answer (None:
    the NMF answer, as the shipped priors' did) with ``steps`` of the fit's Adam steps."""
    return FramePriorSeparator(priors.with_encoder(encoder, fit_steps=steps)).separate


def worse_gain(entry: dict, nmf: dict) -> float:
    """A row's SI-SDRi over KL-NMF's on the validation clips, in the worse of the two conditions (the criterion
    the frame priors' settings were chosen by, bench/stems_frames.py)."""
    keys = [k for k in entry if k.startswith("valid ")]
    return min(entry[k]["si_sdri_mean"] - nmf[k]["si_sdri_mean"] for k in keys)


def frames_main(args: argparse.Namespace) -> None:
    bench = StemsBenchmark()
    rate = bench.sample_rate
    roots = render_benchmark(args.root, bench, say=print)
    train_root = next(iter(roots.values()))
    limit = 2 if args.quick else None
    priors = FramePriors.load(args.frames)
    if priors.encoder is not None:  # measured against the NMF answer's start, as the priors were chosen
        priors = priors.with_encoder(
            None, fit_steps=int(priors.meta.get("nmf_fit_steps", FrameConfig().fit_steps))
        )
    began = time.perf_counter()
    mixtures = [read_stems(f, rate).sum(0) for f in track_folders(train_root, "train")]
    print(f"training the frame encoder on {len(mixtures)} training mixtures ({args.steps} steps) ...", flush=True)
    start = time.perf_counter()
    enc, losses = train_frame_encoder(priors, mixtures, args.steps, progress=not args.quiet)
    minutes = (time.perf_counter() - start) / 60
    shipped = priors.config.fit_steps
    rows = {"one pass": frames_separator(priors, enc, 0)}
    rows |= {f"one pass + {k} fit steps": frames_separator(priors, enc, k) for k in args.updates}
    rows |= {f"NMF answer + {k} fit steps": frames_separator(priors, None, k) for k in args.updates}
    rows[f"NMF answer + {shipped} fit steps (without an encoder)"] = FramePriorSeparator(priors).separate
    dicts = StemDictionaries.load()
    nmf_row = f"KL-NMF ({dicts.config.mix_iter} updates)"
    rows[nmf_row] = separator(lambda X: dicts.spectrograms(None, X), dicts)
    report: dict[str, object] = {"model": "frames", "encoder_steps": args.steps,
                                 "encoder_parameters": sum(p.numel() for p in enc.parameters()),
                                 "train_minutes": round(minutes, 2),
                                 "train_objective_last": round(float(np.mean(losses[-50:])), 5),
                                 "frame_priors": priors.meta.get("command"), "threads": torch.get_num_threads(),
                                 "rows": {}}  # fmt: skip
    # the fit objective each start reaches on the validation clips: the encoder's against the NMF answer's
    valid = {c: benchmark_clips(r, "valid", bench, limit) for c, r in roots.items()}
    values: dict[str, list[float]] = {"one pass": [], "NMF answer": []}
    for items in valid.values():
        for _, stems in items:
            mixture = stems.sum(0)
            X = stft(mixture.float(), priors.config.stft)
            for name, p in (("one pass", priors.with_encoder(enc)), ("NMF answer", priors)):
                z, gain = p.starting_point(mixture, X)
                values[name].append(float(priors.objective(X.abs(), z, gain)))
    report["valid_fit_objective"] = {k: round(float(np.mean(v)), 5) for k, v in values.items()}
    print(f"valid fit objective: {report['valid_fit_objective']}", flush=True)
    for split in ("valid", "test"):
        clips = {c: benchmark_clips(r, split, bench, limit) for c, r in roots.items()}
        measure(report, rows, clips, split, rate, width=52)
        if split == "valid":  # the choice, before the test split is read
            nmf = report["rows"][nmf_row]
            # the encoder's start with each number of fit steps, against the frame priors as they were
            candidates = [n for n in rows if n.startswith("one pass + ") or n.endswith("(without an encoder)")]
            gains = {n: round(worse_gain(report["rows"][n], nmf), 2) for n in candidates}
            chosen = max(gains, key=gains.get)
            report["choice"] = {"criterion": "valid SI-SDRi over KL-NMF in the worse condition", "gains": gains,
                                "chosen": chosen}  # fmt: skip
            print(f"chosen on valid: {chosen} ({gains})", flush=True)
    if args.ship:
        chosen = report["choice"]["chosen"]
        if chosen.startswith("one pass + "):
            k = int(chosen.split()[3])
            entry = report["rows"][chosen]
            meta = {**priors.meta, "nmf_fit_steps": shipped,
                    "encoder": {"command": "python bench/amortised_music.py " + " ".join(sys.argv[1:]),
                                "steps": args.steps, "train_minutes": round(minutes, 2), "fit_steps": k,
                                "valid_choice": report["choice"],
                                "test_si_sdri": {c: entry[f"test {c}"]["si_sdri_mean"]
                                                 for c in roots}}}  # fmt: skip
            out = priors.with_encoder(enc, fit_steps=k)
            out.meta = meta
        else:  # no encoder: the priors as they were, without a record of one
            out = priors
            out.meta = {k: v for k, v in priors.meta.items() if k not in ("encoder", "nmf_fit_steps")}
        out.save(args.frames or shipped_path())
        report["shipped"] = chosen
        if args.frames is None:  # the stems choice records what the shipped frame priors now score on valid
            entry = report["rows"][chosen]
            write_choice({"frames": {c: entry[f"valid {c}"]["si_sdri_mean"] for c in roots}})
        print(f"wrote {args.frames or shipped_path()} ({chosen})")
    report["minutes"] = round((time.perf_counter() - began) / 60, 1)
    out = args.out or ROOT / "docs" / "bench" / "amortised_frames.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root", type=Path, default=BENCHMARK_ROOT, help=f"rendered data (default: {BENCHMARK_ROOT})"
    )
    parser.add_argument("--model", choices=["nmf", "frames"], default="nmf",
                        help="whose frame-wise parameters the encoder reads: the NMF dictionaries' activations "
                        "(default) or the frame priors' latents")  # fmt: skip
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the encoder (default: 1500)")
    parser.add_argument("--updates", type=int, nargs="*",
                        help="k for the pass + k updates (nmf; default 10 50) or fit steps (frames; default "
                        "30 100) rows")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="2 clips per condition and split")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--frames", type=Path, help="--model frames: the frame priors (default: the shipped ones)")
    parser.add_argument("--ship", action="store_true",
                        help="--model frames: write the frame priors with the encoder as their start (and the fit "
                        "steps chosen on valid) over --frames (default: the shipped file), where valid chooses "
                        "it")  # fmt: skip
    # fmt: off
    parser.add_argument("--out", type=Path,
                        help="results (default: docs/bench/amortised_music.json, or amortised_frames.json)")
    # fmt: on
    args = parser.parse_args()
    if args.ship and (args.model != "frames" or args.quick):
        parser.error("--ship is for --model frames, and not with --quick (a choice made on two clips)")
    if args.model == "frames":
        args.updates = [30, 100] if args.updates is None else args.updates
        frames_main(args)
        return
    args.updates = [10, 50] if args.updates is None else args.updates
    args.out = args.out or ROOT / "docs" / "bench" / "amortised_music.json"
    bench = StemsBenchmark()
    rate = bench.sample_rate
    roots = render_benchmark(args.root, bench, say=print)
    train_root = next(iter(roots.values()))
    limit = 2 if args.quick else None
    dicts = StemDictionaries.load()
    # the training split's mixtures: each track's stems summed; no stem reaches the encoder
    mixtures = [read_stems(f, rate).sum(0) for f in track_folders(train_root, "train")]
    print(f"training the encoder on {len(mixtures)} training mixtures ({args.steps} steps) ...", flush=True)
    start = time.perf_counter()
    enc, losses = train_encoder(mixtures, dicts, args.steps)
    minutes = (time.perf_counter() - start) / 60
    parts = {"one pass": amortised_parts(enc, dicts)}
    parts |= {f"one pass + {k} updates": amortised_parts(enc, dicts, k) for k in args.updates}
    parts[f"KL-NMF from scratch ({dicts.config.mix_iter} updates)"] = lambda X: dicts.spectrograms(None, X)
    atoms = dicts.dictionaries.shape[0] * dicts.dictionaries.shape[1]
    parts["50 updates from a flat start"] = amortised_parts(_Flat(atoms), dicts, 50)
    rows = {name: separator(p, dicts) for name, p in parts.items()}
    report: dict[str, object] = {"encoder_steps": args.steps, "train_minutes": round(minutes, 2),
                                 "train_kl_last": round(float(np.mean(losses[-50:])), 5),
                                 "dictionaries": dicts.meta.get("chosen"), "threads": torch.get_num_threads(),
                                 "rows": {}}  # fmt: skip
    # How well each row's activations explain the mix itself (mean KL per element of the magnitude, the
    # objective they all minimise), on the validation clips: a lower KL with a worse separation says the mix's
    # likelihood does not point at the right stems.
    valid = {c: benchmark_clips(r, "valid", bench, limit) for c, r in roots.items()}
    for name, p in parts.items():
        values = []
        for items in valid.values():
            for _, stems in items:
                X = stft(stems.sum(0).float(), dicts.config.stft).abs()
                values.append(float(kl(X, p(X).sum(0))))
        report["rows"].setdefault(name, {})["valid_mix_kl"] = round(float(np.mean(values)), 5)
        print(f"valid mix KL {name:<34} {np.mean(values):.5f}", flush=True)
    for split in ("valid", "test"):
        clips = {c: benchmark_clips(r, split, bench, limit) for c, r in roots.items()}
        measure(report, rows, clips, split, rate, width=34)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
