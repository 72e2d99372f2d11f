"""How well does the drum CWAE reconstruct held-out kits, does its class conditioning hold, how fast is the pad?

    python bench/drums.py --drums data/drums                      # the shipped CWAE and MCNN
    python bench/drums.py --drums data/drums --cwae runs/c/priors.pt --mcnn runs/m/priors.pt

On the test split of a ``sepmodels make-drums`` folder (whole kits never trained on):

- reconstruction by the CWAE (encode, decode): log-mel distance (dB) and spectral convergence of the mel
  magnitudes, beside the reference point of the training set's average spectrogram of the hit's class, and the
  same figures on training hits (the generalisation gap);
- inversion: each inverter (MCNN, Griffin-Lim at 8, 16 and 32 iterations) run on the *true* log-mel of test hits,
  the audio analysed again: spectral convergence of the linear STFT magnitude and log-mel distance;
- class conditioning: a small convolutional classifier trained here on the real training hits' log-mels,
  its accuracy on real test hits (the reference), then on generated hits: codes drawn from N(0, I) and from the
  pad (the class's PCA plane, x and y uniform in [-2, 2] standard deviations) decoded for each class, and the
  same after inversion to audio (Griffin-Lim 8 as the app does, MCNN) and analysis again (what you hear);
  the classes generated hits leak to most;
- latency of a pad move on one thread and on two: decode, MCNN, Griffin-Lim 8 and 16, median of ``--repeats``;
- the trainings' energy, from the checkpoints.

Prints a table and writes docs/bench/drums.json. Run it alone: the latencies are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from sepmodels.data.drums import CLASSES, DrumsData
from sepmodels.drums.cwae import DrumAutoencoder
from sepmodels.drums.mcnn import DrumInverter
from sepmodels.drums.mel import log_mel_distance
from sepmodels.drums.synth import DrumSynth, PadPoint
from sepmodels.fileio import atomic_path
from sepmodels.metrics import spectral_convergence


def _ms(work, repeats: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


class Classifier(nn.Module):
    """A small CNN over standardised log-mels ``[B, n_mels, frames]`` to class logits."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(), nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(32, classes),
        )  # fmt: skip

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.net(log_mel[:, None])


def train_classifier(spec: torch.Tensor, labels: torch.Tensor, steps: int, seed: int = 0) -> tuple:
    """Fit a :class:`Classifier` on training log-mels; returns it with the standardisation it uses."""
    torch.manual_seed(seed)
    mean, std = spec.mean(), spec.std()
    model = Classifier(len(CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(spec.shape[0], (128,), generator=g)
        loss = nn.functional.cross_entropy(model((spec[pick] - mean) / std), labels[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), mean, std


@torch.no_grad()
def accuracy(classify, spec: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Share of ``spec`` classified as ``labels``, and the confusion matrix (rows: true class)."""
    model, mean, std = classify
    predicted = torch.cat([model((spec[i : i + 256] - mean) / std).argmax(1) for i in range(0, len(spec), 256)])
    confusion = torch.zeros(len(CLASSES), len(CLASSES), dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    return float((predicted == labels).float().mean()), confusion


def _leaks(confusion: torch.Tensor, top: int = 4) -> list[str]:
    off = confusion.clone()
    off.fill_diagonal_(0)
    order = off.flatten().argsort(descending=True)[:top]
    rows = confusion.sum(1)
    out = []
    for k in order.tolist():
        i, j = divmod(k, len(CLASSES))
        if off[i, j] > 0:
            out.append(f"{CLASSES[i]} -> {CLASSES[j]} {100 * off[i, j] / rows[i]:.0f} %")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drums", required=True, type=Path, help="a make-drums folder (its test split is scored)")
    parser.add_argument("--cwae", type=Path, help="a drum CWAE (default: the shipped one)")
    parser.add_argument("--mcnn", type=Path, help="its inverter (default: the shipped one)")
    parser.add_argument("--per-class", type=int, default=40, help="generated hits per class (default: 40)")
    parser.add_argument("--classifier-steps", type=int, default=600, help="classifier training (default: 600)")
    parser.add_argument("--repeats", type=int, default=30, help="timing repeats (default: 30)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/drums.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    ae = DrumAutoencoder.load(args.cwae)
    inv = DrumInverter.load(args.mcnn)
    synth = DrumSynth(ae, inv)
    model, logmel = ae.model, ae.model.logmel
    train, test = DrumsData(args.drums, "train"), DrumsData(args.drums, "test")
    report: dict = {"test_hits": len(test), "train_hits": len(train), "classes": list(CLASSES)}

    def spectrograms(data: DrumsData) -> torch.Tensor:
        clips = data.clips.float() / 32768.0
        with torch.no_grad():
            return torch.cat([model.spectrogram(clips[i : i + 256]) for i in range(0, len(clips), 256)])

    train_spec, test_spec = spectrograms(train), spectrograms(test)

    # -- reconstruction --------------------------------------------------------------------------------------
    class_mean = torch.stack([train_spec[train.labels == c].mean(0) for c in range(len(CLASSES))])

    def quality(spec: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            recon = torch.cat([
                model.decode(model.encode(spec[i : i + 256], labels[i : i + 256]), labels[i : i + 256])
                for i in range(0, len(spec), 256)
            ])  # fmt: skip
        ref = class_mean[labels]
        return {
            "log_mel_distance_db": float(log_mel_distance(recon, spec).mean()),
            "spectral_convergence": float(spectral_convergence(logmel.mel(recon), logmel.mel(spec)).mean()),
            "class_average_log_mel_distance_db": float(log_mel_distance(ref, spec).mean()),
            "class_average_spectral_convergence": float(
                spectral_convergence(logmel.mel(ref), logmel.mel(spec)).mean()
            ),
        }

    report["reconstruction_test"] = quality(test_spec, test.labels)
    report["reconstruction_train"] = quality(train_spec, train.labels)

    # -- inversion of true spectrograms ----------------------------------------------------------------------
    clips = test.clips.float() / 32768.0
    inverters = {
        "mcnn": lambda s: inv.invert(s),
        "griffin_lim_8": lambda s: logmel.griffin_lim(s, iterations=8),
        "griffin_lim_16": lambda s: logmel.griffin_lim(s, iterations=16),
        "griffin_lim_32": lambda s: logmel.griffin_lim(s, iterations=32),
    }
    report["inversion"] = {}
    with torch.no_grad():
        truth_mag = logmel.magnitude(clips)
        for name, invert in inverters.items():
            audio = torch.cat([invert(test_spec[i : i + 64]) for i in range(0, len(test_spec), 64)])
            report["inversion"][name] = {
                "spectral_convergence": float(spectral_convergence(logmel.magnitude(audio), truth_mag).mean()),
                "log_mel_distance_db": float(log_mel_distance(logmel(audio), test_spec).mean()),
            }

    # -- class conditioning ----------------------------------------------------------------------------------
    classify = train_classifier(train_spec, train.labels, args.classifier_steps)
    real, real_confusion = accuracy(classify, test_spec, test.labels)
    g = torch.Generator().manual_seed(1)
    n = args.per_class
    labels = torch.arange(len(CLASSES)).repeat_interleave(n)
    gaussian = torch.randn(len(labels), ae.config.latent, generator=g)
    pad = torch.zeros(len(labels), ae.config.latent)
    pad[:, :2] = 4 * torch.rand(len(labels), 2, generator=g) - 2
    pad_codes = torch.stack([ae.latent_map.code(p, int(c)) for p, c in zip(pad, labels, strict=True)])
    report["class_accuracy"] = {"real_test_hits": real, "real_test_leaks": _leaks(real_confusion)}
    with torch.no_grad():
        for name, codes in (("gaussian", gaussian), ("pad", pad_codes)):
            spec = model.decode(codes, labels)
            acc, _ = accuracy(classify, spec, labels)
            heard = torch.cat([logmel(inv.invert(spec[i : i + 64])) for i in range(0, len(spec), 64)])
            acc_heard, _ = accuracy(classify, heard, labels)
            heard_gl = torch.cat([
                logmel(logmel.griffin_lim(spec[i : i + 64], iterations=8)) for i in range(0, len(spec), 64)
            ])  # fmt: skip
            acc_gl, confusion_gl = accuracy(classify, heard_gl, labels)
            report["class_accuracy"][name] = {
                "spectrogram": acc, "audio_via_mcnn": acc_heard, "audio_via_griffin_lim_8": acc_gl,
                "leaks": _leaks(confusion_gl),
                "per_class_audio": {c: float(confusion_gl[i, i] / n) for i, c in enumerate(CLASSES)},
            }  # fmt: skip

    # -- latency ---------------------------------------------------------------------------------------------
    report["latency_ms"] = {}
    code = synth.code(PadPoint(0, 1.0, -0.5, 0.3))
    label = torch.tensor([0])
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.no_grad():
            one = model.decode(code[None], label)
            decode = _ms(lambda: model.decode(code[None], label), args.repeats)
            mcnn = _ms(lambda one=one: inv.invert(one), args.repeats)
            gl8 = _ms(lambda one=one: logmel.griffin_lim(one, iterations=8), args.repeats)
            gl16 = _ms(lambda one=one: logmel.griffin_lim(one, iterations=16), args.repeats)
        report["latency_ms"][f"{threads}_thread{'s' if threads > 1 else ''}"] = {
            "decode": decode, "mcnn": mcnn, "griffin_lim_8": gl8, "griffin_lim_16": gl16,
            "pad_move_mcnn": decode + mcnn, "pad_move_griffin_lim_8": decode + gl8,
        }  # fmt: skip

    report["energy"] = {"cwae": ae.meta.get("energy"), "mcnn": inv.meta.get("energy")}
    report["training"] = {"cwae_steps": ae.meta.get("step"), "mcnn_steps": inv.meta.get("step")}

    r, t = report["reconstruction_test"], report["reconstruction_train"]
    print(f"reconstruction (test kits, {len(test)} hits): log-mel distance {r['log_mel_distance_db']:.2f} dB "
          f"(class average {r['class_average_log_mel_distance_db']:.2f}; train hits "
          f"{t['log_mel_distance_db']:.2f}), "
          f"spectral convergence {r['spectral_convergence']:.3f} (class average "
          f"{r['class_average_spectral_convergence']:.3f}; train {t['spectral_convergence']:.3f})")  # fmt: skip
    for name, q in report["inversion"].items():
        print(f"inversion of true log-mels by {name}: spectral convergence {q['spectral_convergence']:.3f}, "
              f"log-mel distance {q['log_mel_distance_db']:.2f} dB")  # fmt: skip
    c = report["class_accuracy"]
    print(f"class accuracy: real test hits {100 * c['real_test_hits']:.1f} % (chance {100 / len(CLASSES):.1f} %)")
    for name in ("gaussian", "pad"):
        print(f"  generated ({name}): spectrogram {100 * c[name]['spectrogram']:.1f} %, heard via Griffin-Lim "
              f"{100 * c[name]['audio_via_griffin_lim_8']:.1f} %, via MCNN {100 * c[name]['audio_via_mcnn']:.1f} "
              f"%; leaks (Griffin-Lim): {', '.join(c[name]['leaks'])}")  # fmt: skip
    for threads, lat in report["latency_ms"].items():
        print(f"latency ({threads.replace('_', ' ')}): decode {lat['decode']:.1f} ms, "
              f"MCNN {lat['mcnn']:.1f} ms, Griffin-Lim 8 {lat['griffin_lim_8']:.1f} ms, 16 "
              f"{lat['griffin_lim_16']:.1f} ms; pad move {lat['pad_move_griffin_lim_8']:.1f} ms (Griffin-Lim 8, "
              "the app's default), "
              f"{lat['pad_move_mcnn']:.1f} ms (MCNN)")  # fmt: skip
    for name, e in report["energy"].items():
        if e:
            print(f"training energy {name}: {1000 * e['energy_kwh']:.2f} Wh in {e['seconds'] / 60:.1f} min")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
