"""Dictionary source models: one KL-NMF dictionary per stem, the classical one-prior-per-source separator.

Each stem's dictionary is learned on that stem's solo training audio only: the magnitude STFT of the solo
audio, ``|S| ~ A D`` (frames x atoms times atoms x bins), by scikit-learn's NMF with the Kullback-Leibler
divergence. A mix is separated by fitting the activations of all dictionaries together on the mix's
magnitude with the dictionaries frozen (the same scikit-learn call with ``update_H=False``); each stem's part
``A_j D_j`` then becomes a soft mask of the mix's STFT (:func:`sepmodels.spectral.mask_mixture`). No mixture
and no other stem is ever seen while learning.

Example:
    >>> solo = {name: torch.randn(14_700) for name in ("a", "b")}
    >>> dicts = StemDictionaries.fit(solo, NMFConfig(atoms=4, fit_iter=20), sample_rate=14_700)
    >>> NMFSeparator(dicts).separate(torch.randn(14_700)).shape
    torch.Size([2, 14700])
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sepmodels.checkpoint import load_model_file, save_checkpoint
from sepmodels.spectral import STFTConfig, mask_mixture, stft

CLASS = "StemDictionaries"
SHIPPED = "stems_nmf.pt"


@dataclass(frozen=True)
class NMFConfig:
    """A dictionary model's settings (the shipped ones were chosen on the benchmark's validation split).

    Arguments:
        atoms: dictionary atoms per stem.
        fit_iter: multiplicative-update iterations when learning a dictionary.
        mix_iter: iterations when fitting the activations on a mix.
        power: the mask's exponent on each stem's modelled magnitude (1: ratio mask, 2: Wiener filter).
        n_fft, hop: the STFT (:class:`~sepmodels.spectral.STFTConfig`).
        seed: NMF's initialisation.
    """

    atoms: int = 96
    fit_iter: int = 200
    mix_iter: int = 200
    power: float = 1.0
    n_fft: int = 2048
    hop: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.atoms < 1 or self.fit_iter < 1 or self.mix_iter < 1 or self.power <= 0:
            raise ValueError(f"NMFConfig needs positive atoms, iterations and power, got {self}")

    @property
    def stft(self) -> STFTConfig:
        return STFTConfig(self.n_fft, self.hop)


def _nmf(X: np.ndarray, atoms: int, iterations: int, seed: int, dictionary: np.ndarray | None = None):
    """scikit-learn's KL-NMF of ``X`` (frames x bins) -> (activations, dictionary); a given ``dictionary``
    stays fixed."""
    from sklearn.decomposition import non_negative_factorization
    from sklearn.exceptions import ConvergenceWarning

    # "Maximum number of iterations reached": here the iteration count is a setting, not a failure. A filter
    # for that message of scikit-learn's NMF alone, added once: warnings.catch_warnings swaps the process's
    # filters and is not thread-safe, so the apps' sessions (threads) let the warning through with it.
    warnings.filterwarnings("ignore", message="Maximum number of iterations", category=ConvergenceWarning,
                            module=r"sklearn\.decomposition\._nmf")  # fmt: skip
    A, D, _ = non_negative_factorization(
        X, H=dictionary, n_components=atoms, init=None if dictionary is not None else "nndsvda",
        update_H=dictionary is None, solver="mu", beta_loss="kullback-leibler", max_iter=iterations,
        tol=1e-5, random_state=seed,
    )  # fmt: skip
    return A, D


class StemDictionaries:
    """One nonnegative dictionary per stem over the magnitude STFT.

    Arguments:
        names: the stems, in order.
        dictionaries: ``[N, atoms, bins]`` float32, nonnegative.
        config: the settings they were learned with.
        sample_rate: Hz.
        meta: provenance (training audio per stem, fitting time, validation figures).
    """

    def __init__(self, names: tuple[str, ...], dictionaries: torch.Tensor, config: NMFConfig, sample_rate: int,
                 meta: dict[str, Any] | None = None) -> None:  # fmt: skip
        N, atoms, bins = dictionaries.shape
        if len(names) != N or atoms != config.atoms or bins != config.stft.bins:
            raise ValueError(f"dictionaries of shape {tuple(dictionaries.shape)} do not fit {len(names)} stems of "
                             f"{config.atoms} atoms over {config.stft.bins} bins")  # fmt: skip
        if not bool(torch.isfinite(dictionaries).all()) or bool((dictionaries < 0).any()):
            raise ValueError("dictionaries must be finite and nonnegative")
        self.names, self.dictionaries, self.config = tuple(names), dictionaries.float(), config
        self.sample_rate, self.meta = int(sample_rate), dict(meta or {})

    @classmethod
    def fit(cls, solo: dict[str, torch.Tensor], config: NMFConfig, sample_rate: int,
            say: Callable[[str], None] = lambda _line: None) -> StemDictionaries:  # fmt: skip
        """Learn each stem's dictionary from its own solo audio ``solo[name]: [T]`` (silent frames left out)."""
        dicts, seconds = [], {}
        start = time.perf_counter()
        for name, audio in solo.items():
            mag = stft(audio.float(), config.stft).abs().T.double().numpy()  # [frames, bins]
            loud = mag.sum(1) > 1e-3 * mag.sum(1).max()
            if loud.sum() < config.atoms:
                raise ValueError(f"{name}: {int(loud.sum())} non-silent frames cannot learn {config.atoms} atoms")
            _A, D = _nmf(mag[loud], config.atoms, config.fit_iter, config.seed)
            dicts.append(torch.from_numpy(D).float())
            seconds[name] = round(audio.shape[-1] / sample_rate, 1)
            say(f"{name}: {config.atoms} atoms from {seconds[name]:g} s ({int(loud.sum())} frames)")
        meta = {"solo_seconds": seconds, "fit_minutes": round((time.perf_counter() - start) / 60, 2)}
        return cls(tuple(solo), torch.stack(dicts), config, sample_rate, meta)

    def spectrograms(self, mixture: torch.Tensor, mix_spec: torch.Tensor | None = None) -> torch.Tensor:
        """Each stem's modelled magnitude ``[N, bins, frames]`` of ``mixture [T]``, activations fitted with the
        dictionaries frozen."""
        X = (stft(mixture.float(), self.config.stft) if mix_spec is None else mix_spec).abs()
        N, K, bins = self.dictionaries.shape
        D = self.dictionaries.reshape(N * K, bins).double().numpy()
        A, _ = _nmf(X.T.double().numpy(), N * K, self.config.mix_iter, self.config.seed, dictionary=D)
        A = torch.from_numpy(A).reshape(-1, N, K).permute(1, 0, 2)  # [N, frames, K]
        return (A @ self.dictionaries.double()).transpose(1, 2).float()  # [N, bins, frames]

    def cross_fit(self, stems: torch.Tensor, silent: torch.Tensor | None = None) -> torch.Tensor:
        """How well each stem's dictionary alone explains each true stem: ``[N true stems, N dictionaries]``,
        the KL divergence of the stem's magnitude from its best fit by that dictionary (activations fitted, the
        dictionary frozen), divided by the stem's total magnitude so loud and quiet stems compare (0 is a
        perfect fit; lower is better). The dictionaries' cross-likelihood: a stem best explained by another
        stem's dictionary is one the baseline will hand to that stem. Rows of ``silent`` stems are NaN."""
        N = len(self.names)
        if stems.dim() != 2 or stems.shape[0] != N:
            raise ValueError(f"expected stems [{N}, T], got shape {tuple(stems.shape)}")
        out = torch.full((N, N), float("nan"), dtype=torch.float64)
        for j in range(N):
            if silent is not None and bool(silent[j]):
                continue
            V = stft(stems[j].float(), self.config.stft).abs().T.double().numpy() + 1e-9  # [frames, bins]
            for k in range(N):
                D = self.dictionaries[k].double().numpy()
                A, _ = _nmf(V, D.shape[0], self.config.mix_iter, self.config.seed, dictionary=D)
                fit = A @ D + 1e-9
                out[j, k] = float((V * np.log(V / fit) - V + fit).sum() / V.sum())
        return out

    def payload(self) -> dict[str, Any]:
        return {"class": CLASS, "config": asdict(self.config), "names": list(self.names),
                "sample_rate": self.sample_rate, "dictionaries": self.dictionaries, "meta": self.meta}  # fmt: skip

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, self.payload())

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> StemDictionaries:
        """Read dictionaries written by :meth:`save` (the shipped ones when ``path`` is None)."""
        where = Path(path) if path is not None else shipped_path()
        dicts, _ = load_model_file(where, CLASS, "NMF dictionaries (bench/stems.py)", cls.from_payload)
        return dicts

    @classmethod
    def from_payload(cls, ckpt: dict[str, Any]) -> StemDictionaries:
        """Dictionaries from their :meth:`payload` (a file's, or one another model's file carries)."""
        if ckpt.get("class") != CLASS:
            raise ValueError(f"a {ckpt.get('class')!r} is not NMF dictionaries")
        return cls(tuple(ckpt["names"]), ckpt["dictionaries"], NMFConfig(**ckpt["config"]),
                   int(ckpt["sample_rate"]), ckpt.get("meta"))  # fmt: skip


class NMFSeparator:
    """Separation with :class:`StemDictionaries`: activations on the mix, soft masks (a
    :class:`~sepmodels.inference.separator.Separator` whose mix is the sum of the stems, as music's is)."""

    max_steps = 0
    mix = "sum"

    def __init__(self, dictionaries: StemDictionaries) -> None:
        self.dictionaries = dictionaries
        self.names, self.sample_rate = dictionaries.names, dictionaries.sample_rate

    def describe(self) -> str:
        c = self.dictionaries.config
        return f"KL-NMF, {c.atoms} atoms per stem, {c.mix_iter} iterations, mask power {c.power:g}"

    def valid_length(self, length: int) -> int:
        self.dictionaries.config.stft.check_length(length)
        return length

    def separate(self, mixture: torch.Tensor, truth: torch.Tensor | None = None) -> torch.Tensor:
        if mixture.dim() != 1:
            raise ValueError(f"mixture must be mono [T], got shape {tuple(mixture.shape)}")
        config = self.dictionaries.config
        X = stft(mixture.float(), config.stft)
        return mask_mixture(
            mixture.float(), self.dictionaries.spectrograms(mixture, X), config.stft, config.power, X
        )


def shipped_path() -> Path:
    """The NMF dictionaries shipped with the package (``python bench/stems.py`` fits them)."""
    return Path(str(resources.files("sepmodels") / "checkpoints" / SHIPPED))


__all__ = ["NMFConfig", "NMFSeparator", "StemDictionaries", "shipped_path"]
