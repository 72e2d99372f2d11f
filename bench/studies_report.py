"""Markdown tables of a folder of study results (``sepmodels study all --out DIR``), for the docs.

    python bench/studies_report.py                       # the shipped priors' results
    python bench/studies_report.py --studies DIR --out docs/bench/studies.md

Prints the tables and writes them to ``--out``; docs/thesis-experiments.md quotes them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from explorer.priors_view import default_studies_dir, load_studies
from sepmodels.fileio import atomic_path
from sepmodels.studies import StudyRecord


def _table(rows: list[str], cols: list[str], values: torch.Tensor, corner: str, bold_max: bool = True) -> str:
    head = f"| {corner} | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols)
    lines = [head]
    for i, r in enumerate(rows):
        best = int(values[i].argmax())
        cells = [
            f"**{float(v):.3g}**" if bold_max and j == best else f"{float(v):.3g}" for j, v in enumerate(values[i])
        ]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(studies: dict[str, StudyRecord]) -> str:
    out = []
    if "cross" in studies:
        s = studies["cross"]
        r = s.results
        out.append(
            f"## Cross-likelihood\n\n{s.data['n']} test clips of {s.data['length']} samples per source; "
            "rows are data, columns priors; nats per sample; the best prior of each row in bold.\n"
        )
        for i, sigma in enumerate(r.sigmas):
            v = r.values[i]
            own = torch.tensor([r.priors.index(x) for x in r.sources])
            first = (v.argmax(dim=1) == own[:, None]).double().mean()
            out.append(f"### sigma = {sigma:g} (own prior first for {100 * float(first):.0f} % of clips)\n")
            out.append("Mean:\n\n" + _table(r.sources, r.priors, v.mean(-1), "data \\ prior") + "\n")
            out.append("Median:\n\n" + _table(r.sources, r.priors, v.median(-1).values, "data \\ prior") + "\n")
    if "noise" in studies:
        r = studies["noise"].results
        tn = [f"+{x:g}" for x in r.test_noise]
        out.append(
            "## Noise conditioning\n\nMean over sources of each source's test clips plus noise (columns) under "
            "its own prior; nats per sample.\n"
        )
        rows, vals = [], []
        if r.finetuned is not None:
            f = r.finetuned
            rows += [f"(a) {x}" for x in f.labels]
            vals.append(f.own.mean(-1))
            out.append(
                f"(a): a plain flow trained {f.base_steps} steps at sigma 0.001, then fine-tuned "
                f"{f.finetune_steps} steps at each level in turn.\n"
            )
        rows += [f"(b) conditioned at {x:g}" for x in r.levels]
        vals.append(r.conditional.own.mean(-1))
        out.append(_table(rows, tn, torch.cat(vals), "model \\ noise added", bold_max=False) + "\n")
        out.append(
            "Sources (of 4) whose own prior gives the highest mean log-likelihood, at each level (data plus "
            "noise at that level, the model at that level):\n"
        )
        lines = ["| level | (a) fine-tuned | (b) conditioned |", "|---|---|---|"]
        own = torch.tensor([r.priors.index(x) for x in r.sources])
        for i, level in enumerate(r.levels):
            b = (r.conditional.cross[i].argmax(1) == own).double().mean()
            a = (r.finetuned.cross[i + 1].argmax(1) == own).double().mean() if r.finetuned is not None else None
            lines.append(
                f"| {level:g} | {'-' if a is None else f'{100 * float(a):.0f} %'} | {100 * float(b):.0f} % |"
            )
        out.append("\n".join(lines) + "\n")
    if "probes" in studies:
        r = studies["probes"].results
        out.append("## Probes\n\nConstant inputs (nats per sample):\n")
        rows, vals = [], []
        for i, c in enumerate(r.conditionings):
            for j, v in enumerate(r.values):
                rows.append(f"input {v:g}, sigma {c:g}")
                vals.append(r.constants[i, j])
        out.append(_table(rows, r.priors, torch.stack(vals), "probe \\ prior", bold_max=False) + "\n")
        rows = [f"noise {x:g}" for x in r.noise_sigmas]
        for i in sorted({0, len(r.conditionings) - 1}):
            c = r.conditionings[i]
            out.append(f"Gaussian noise of standard deviation sigma_n, priors at sigma {c:g}:\n")
            out.append(_table(rows, r.priors, r.noise[i], "probe \\ prior", bold_max=False) + "\n")
    if "denoise" in studies:
        s = studies["denoise"]
        r = s.results
        out.append(
            f"## Denoising\n\nOne denoising step of the {s.priors['kind']} priors `{s.priors['path']}` on "
            f"{s.data['n']} test clips of {s.data['length']} samples per source plus noise of level sigma; "
            "SI-SDR in dB (noisy input / these priors" + (" / exact toy prior" if r.has_exact else "") + ").\n"
        )
        cells = []
        for i in range(len(r.sigmas)):
            row = [r.noisy[i].mean(-1), r.denoised[i].mean(-1)]
            if r.has_exact:
                row.append(r.exact[i].mean(-1))
            cells.append([" / ".join(f"{float(v[k]):.1f}" for v in row) for k in range(len(r.sources))])
        lines = ["| sigma | " + " | ".join(r.sources) + " |", "|---|" + "---|" * len(r.sources)]
        lines += [f"| {sigma:g} | " + " | ".join(c) + " |" for sigma, c in zip(r.sigmas, cells, strict=True)]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=Path, default=default_studies_dir())
    parser.add_argument("--out", type=Path, default=Path("docs/bench/studies.md"))
    args = parser.parse_args()
    studies, problems = load_studies(args.studies)
    for p in problems:
        print(f"skipped: {p}")
    text = f"<!-- written by bench/studies_report.py from {args.studies} -->\n\n" + report(studies)
    print(text)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
