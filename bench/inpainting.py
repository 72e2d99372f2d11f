"""How good is the notes VQ-VAE, how well do its codemap priors inpaint, and how fast is the app's edit?

    python bench/inpainting.py --notes data/notes                  # the shipped VQ-VAE and codemap priors
    python bench/inpainting.py --notes data/notes --codec runs/v/priors.pt --codes runs/v/codes.pt

On ``--n`` held-out notes (the test split of a ``sepmodels make-notes`` folder, programs never trained on; or
``--split valid``, other programs, where settings are chosen):

- reconstruction: log-spectral distance, spectral convergence, and SI-SDR of the audio by fast Griffin-Lim,
  beside Griffin-Lim of the original magnitudes (the best Griffin-Lim can do) and the original phase;
- the codebook: codes used and perplexity over the held-out codemaps, and over the training codemaps;
- inpainting: the share of masked cells each prior recovers (from ``fit-codes``, the same random boxes for
  every prior), against the uniform floor;
- the edit's temperature: the mean dB error inside a random box resampled by the default prior at
  temperatures 0 to 1, beside the VQ-VAE's own reconstruction there (``--edits`` notes);
- latency of one edit of a 4 s note as the app does it (a 16 x 8 box): resample per prior, decode, and audio
  by Griffin-Lim or with the original phase, median of ``--repeats`` runs;
- the training's energy, from the checkpoint.

Prints a table and writes docs/bench/inpainting.json. Run it alone: the latencies are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from sepmodels.data.notes import NotesData
from sepmodels.fileio import atomic_path
from sepmodels.inpaint.codes import box_mask, perplexity, random_box_masks
from sepmodels.inpaint.inpainter import Inpainter, codemaps_of, reconstruction_quality


def _ms(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


TEMPERATURES = (0.0, 0.25, 0.5, 1.0)
_DB = 20 / 2.302585092994046  # log-magnitude (natural log) to dB


def box_errors(ip: Inpainter, clips: torch.Tensor, temperatures=TEMPERATURES, seed: int = 0) -> dict[str, float]:
    """Mean absolute dB error, inside one random box per clip (10 to 50 % of each axis), between the original
    spectrogram and the note edited by resampling the box with the default prior at each temperature; beside
    the VQ-VAE's own reconstruction there (the codes unchanged: the floor an edit can reach). Both spectrograms
    are clamped 80 dB below the note's peak."""
    g = torch.Generator().manual_seed(seed)
    prior = ip.prior_names[0]
    sums = {"reconstruction (codes unchanged)": 0.0, **{f"temperature {t:g}": 0.0 for t in temperatures}}
    for i, clip in enumerate(clips):
        a = ip.analyse(clip)
        h, w = a.codes.shape
        mask = random_box_masks(1, (h, w), g)[0]
        area = torch.nn.functional.interpolate(mask[None, None].float(), size=tuple(a.log_mag.shape))[0, 0] > 0
        peak = float(a.log_mag.max()) * _DB

        def err(log_mag: torch.Tensor, area=area, a=a, peak=peak) -> float:
            x = (_DB * log_mag).clamp_min(peak - 80)
            y = (_DB * a.log_mag).clamp_min(peak - 80)
            return float((x - y).abs()[area].mean())

        sums["reconstruction (codes unchanged)"] += err(a.recon)
        frames = a.log_mag.shape[-1]
        for t in temperatures:
            edited = ip.inpaint(a.codes, mask, prior, t, seed=i)
            sums[f"temperature {t:g}"] += err(ip.decode(edited, frames))
    return {k: v / len(clips) for k, v in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", required=True, type=Path, help="a make-notes folder (its test split is scored)")
    parser.add_argument("--codec", type=Path, help="a notes VQ-VAE (default: the shipped one)")
    parser.add_argument("--codes", type=Path, help="its codemap priors (default: the shipped ones)")
    parser.add_argument("--n", type=int, default=100, help="held-out notes (default: 100)")
    parser.add_argument("--split", choices=("valid", "test"), default="test",
                        help="which held-out programs: valid (where the edit's temperature is chosen) or test "
                             "(default)")  # fmt: skip
    parser.add_argument("--edits", type=int, default=32, help="notes edited per temperature (default: 32)")
    parser.add_argument("--repeats", type=int, default=7, help="timing repeats (default: 7)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/inpainting.json"))
    args = parser.parse_args()
    ip = Inpainter.load(args.codec, args.codes)
    test = NotesData(args.notes, args.split)
    picked = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.n]
    clips = test.clips[picked].float() / 32768.0
    quality = reconstruction_quality(ip.codec, clips, iterations=ip.iterations)
    maps = codemaps_of(ip.codec, clips)
    counts = torch.bincount(maps.flatten(), minlength=ip.codec.config.codebook_size)
    held_out = {"codes_used": int((counts > 0).sum()), "perplexity": perplexity(counts)}
    train_usage = {"codes_used": int((ip.codes.usage > 0).sum()), "perplexity": ip.codes.perplexity}

    temperature = box_errors(ip, clips[: args.edits])

    note = clips[0]
    analysis = ip.analyse(note)
    h, w = analysis.codes.shape
    mask = box_mask((h, w), (h // 4, h // 4 + 16), (w // 4, w // 4 + 8))
    frames, length = analysis.log_mag.shape[-1], note.shape[-1]
    latency = {"analyse": _ms(lambda: ip.analyse(note), args.repeats)}
    for name in ip.prior_names:
        latency[f"resample: {name}"] = _ms(
            lambda name=name: ip.inpaint(analysis.codes, mask, name, 1.0), args.repeats
        )
    latency["decode"] = _ms(lambda: ip.decode(analysis.codes, frames), args.repeats)
    latency["audio: Griffin-Lim"] = _ms(lambda: ip.listen(analysis.recon, length), args.repeats)
    latency["audio: original phase"] = _ms(lambda: ip.listen(analysis.recon, length, note), args.repeats)
    nb = next(n for n in ip.prior_names if n.startswith("naive Bayes"))
    edit = latency[f"resample: {nb}"] + latency["decode"] + latency["audio: Griffin-Lim"]

    report = {
        "codec": str(args.codec or "shipped"),
        "codec_step": ip.codec.meta.get("step"),
        "held_out_notes": len(clips),
        "griffin_lim_iterations": ip.iterations,
        "reconstruction": quality,
        "codebook_held_out": held_out,
        "codebook_train": train_usage,
        "codebook_size": ip.codec.config.codebook_size,
        "split": args.split,
        "inpainting_accuracy": ip.codes.accuracy,
        "box_error_db": {"prior": ip.prior_names[0], "notes": min(args.edits, len(clips)), **temperature},
        "inpainting_meta": {k: ip.codes.meta.get(k) for k in ("test_notes", "transformer_steps", "shape")},
        "latency_ms": latency,
        "edit_ms_naive_bayes": edit,
        "training_energy": ip.codec.meta.get("energy"),
        "codes_fit_energy": ip.codes.meta.get("energy"),
        "threads": torch.get_num_threads(),
    }
    print(f"reconstruction of {len(clips)} held-out notes (VQ-VAE step {report['codec_step']}):")
    for name, value in quality.items():
        print(f"  {name:<24}{value:8.2f}")
    print(f"codebook: {held_out['codes_used']} of {report['codebook_size']} codes used on held-out notes, "
          f"perplexity {held_out['perplexity']:.1f} (training notes: {train_usage['codes_used']}, "
          f"{train_usage['perplexity']:.1f})")  # fmt: skip
    print("inpainting, share of masked cells recovered:")
    for name, value in ip.codes.accuracy.items():
        print(f"  {name:<28}{100 * value:6.1f} %")
    print(f"mean dB error in a random box, {ip.prior_names[0]} ({report['box_error_db']['notes']} notes, "
          f"{args.split} split):")  # fmt: skip
    for name, value in temperature.items():
        print(f"  {name:<36}{value:8.2f}")
    print("latency of one edit of a 4 s note, ms (median):")
    for name, value in latency.items():
        print(f"  {name:<36}{value:8.1f}")
    print(f"  resample ({nb}) + decode + Griffin-Lim = {edit:.0f} ms")
    energy = report["training_energy"]
    if energy:
        print(f"training: {1000 * energy['energy_kwh']:.1f} Wh in {energy['seconds'] / 60:.1f} min, "
              f"{1000 * energy['co2_kg']:.2f} g CO2e (CodeCarbon), {1000 * energy['co2_paper_kg']:.2f} g (paper's "
              f"formula); {energy['method']}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
