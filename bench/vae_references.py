"""What limits the VAE posterior: the priors, the objective, or the encoder? Three references.

    python bench/vae_references.py                      # about 20 minutes on 2 cores
    python bench/vae_references.py --steps 100 --finetune-steps 20 --n 2    # a quick look

1. **The objective at known answers.** On the benchmark's mixes, the ELBO per sample (mixing fit + prior +
   entropy, as ``train --model vae`` computes it, with the posterior's spread taken as ``--tau``) at the true
   sources and at four copies of the mix (what a posterior that learned nothing offers): if the truth does not
   win by a wide margin, no encoder can be trained to it.
2. **The encoder told the answer.** The same encoder (``--config default``) trained for the same budget on
   the true sources (squared error of its mean): the most this encoder and budget can give. Not an ELBO model
   and never shipped; a yardstick.
3. **Start at that answer, then follow the ELBO** against the frozen priors: whether the ELBO holds the encoder
   there or moves it away (and where to).

Mean SI-SDR in dB over the benchmark's 16 mixes of 1 s (``bench/separation.py``'s, seed 0); written to
docs/bench/vae_references.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sepmodels import mixing
from sepmodels.checkpoint import default_wave_priors_path
from sepmodels.data import toy
from sepmodels.fileio import atomic_path
from sepmodels.inference.posterior import Demixer, elbo
from sepmodels.metrics import si_sdr
from sepmodels.nn.vae import VAEConfig, VAEEncoder
from sepmodels.priors import load_priors


def objective_at(priors, truths: torch.Tensor, sigma: float, tau: float, gamma: float) -> dict[str, dict]:
    """ELBO terms per sample (nats) at the truth and at mix copies, each plus noise of the posterior's spread."""
    g = torch.Generator().manual_seed(0)
    T = truths.shape[-1]
    mix = mixing.mix(truths, "mean")
    entropy = len(priors) * 0.5 * math.log(2 * math.pi * math.e * tau**2)  # a normal of spread tau per source
    out = {}
    for name, s in [("truth", truths), ("mix copies", mix[:, None].expand_as(truths))]:
        s = (s + tau * torch.randn(s.shape, generator=g)).clamp(-1, 1)
        fit = -0.5 * (mix - mixing.mix(s, "mean")).pow(2) / gamma**2 - 0.5 * math.log(2 * math.pi * gamma**2)
        prior = priors.clip_log_prob(s, sigma).sum(1) / T
        terms = {"fit": float(fit.mean()), "prior": float(prior.mean()), "entropy": entropy}
        out[name] = {**terms, "elbo": sum(terms.values())}
    return out


def score(encoder: VAEEncoder, truths: torch.Tensor) -> float:
    demixer = Demixer(encoder.eval(), toy.SOURCES, toy.SAMPLE_RATE)
    sdr = torch.stack([si_sdr(demixer.separate(mixing.mix(t)), t) for t in truths])
    encoder.train()
    return float(sdr.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--priors", default=str(default_wave_priors_path()), help="(default: the wave priors)")
    parser.add_argument("--prior-sigma", type=float, default=0.1, help="noise level of the ELBO's prior term")
    parser.add_argument("--tau", type=float, default=0.1, help="the posterior's spread in reference 1")
    parser.add_argument("--steps", type=int, default=1500, help="steps of the encoder told the answer")
    parser.add_argument("--finetune-steps", type=int, default=200, help="ELBO steps from that start")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--n", type=int, default=16, help="benchmark mixes")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/vae_references.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    priors = load_priors(args.priors).freeze()
    cfg = VAEConfig(prior_sigma=args.prior_sigma)
    truths = toy.toy_test_set(args.n, toy.SAMPLE_RATE, seed=0)
    report: dict[str, object] = {"priors": args.priors, "prior_sigma": args.prior_sigma, "mixes": args.n,
                                 "mix_si_sdr_mean": float(torch.stack(
                                     [si_sdr(mixing.mix(t).expand_as(t), t) for t in truths]).mean())}  # fmt: skip

    started = time.perf_counter()
    report["objective"] = objective_at(priors, truths, args.prior_sigma, args.tau, cfg.gamma)
    for name, terms in report["objective"].items():
        print(f"1. ELBO per sample at {name:<10}: " + "  ".join(f"{k} {v:8.2f}" for k, v in terms.items()))

    encoder = VAEEncoder(len(toy.SOURCES), cfg)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(0)
    for step in tqdm(range(args.steps), desc="2. told the answer", unit="step"):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * 0.1 ** (step / args.steps)  # 1e-3 down to 1e-4
        clean = toy.toy_batch(args.batch_size, args.length, data)
        loss = (encoder(mixing.mix(clean, "mean")).mean - clean).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimizer.step()
    told = score(encoder, truths)
    print(f"2. the encoder told the answer ({args.steps} steps): {told:.2f} dB")

    optimizer = torch.optim.Adam(encoder.parameters(), lr=3e-4)
    noise = torch.Generator().manual_seed(1)
    path = [{"step": 0, "si_sdr_mean": told, "elbo": None}]
    for step in tqdm(range(args.finetune_steps), desc="3. then the ELBO", unit="step"):
        e = elbo(encoder, priors, mixing.mix(toy.toy_batch(args.batch_size, args.length, data), "mean"),
                 generator=noise, config=cfg)  # fmt: skip
        if not torch.isfinite(e.loss):
            print(f"3. the ELBO became {e.loss.item()} at step {step + 1}; stopped there")
            break
        optimizer.zero_grad()
        e.loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % max(1, args.finetune_steps // 4) == 0 or step + 1 == args.finetune_steps:
            path.append({"step": step + 1, "si_sdr_mean": score(encoder, truths), "elbo": e.elbo.item()})
            print(f"3. after {step + 1} ELBO steps: {path[-1]['si_sdr_mean']:.2f} dB (ELBO {e.elbo.item():.2f})")
    report.update(told_si_sdr_mean=told, told_steps=args.steps, finetune=path,
                  minutes=round((time.perf_counter() - started) / 60, 1))  # fmt: skip
    print(f"the mix itself: {report['mix_si_sdr_mean']:.2f} dB")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
