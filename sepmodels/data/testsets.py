"""Test data of the studies: one protocol, :class:`TestData`, for the toy sources and the musdb test split.

A test set gives clean clips ``[n, N, length]`` (N sources, aligned: clip ``i`` of every source belongs to the
same mix), read once per process, and describes itself for a results file; :func:`test_data_from` rebuilds it
from that description, so an app can redraw exactly the clips behind a file's numbers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from sepmodels.data import toy


class TestData(Protocol):
    """Aligned clean test clips of named sources.

    Attributes:
        name: what a results file calls the data (``toy``, ``musdb``).
        sources: the source names, in the order of the clips' source dimension.
        sample_rate: Hz.
    """

    __test__ = False  # not a pytest class, whatever its name

    @property
    def name(self) -> str: ...

    @property
    def sources(self) -> tuple[str, ...]: ...

    @property
    def sample_rate(self) -> int: ...

    def clean(self, n: int, length: int, seed: int = 0) -> torch.Tensor:
        """``n`` clean clips of every source, ``[n, N, length]``; the same arguments give the same clips."""
        ...

    def describe(self) -> dict[str, Any]:
        """What a results file says about the data (loads back with :func:`test_data_from`)."""
        ...

    def train_options(self) -> dict[str, Any]:
        """The :class:`~sepmodels.train.TrainConfig` fields that train on this data's training split."""
        ...


@functools.lru_cache(maxsize=4)
def _clips(data: TestData, n: int, length: int, seed: int) -> torch.Tensor:
    # Every noise level of a study reuses the same clips; musdb's are costly to read.
    return data._read(n, length, seed)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ToyTestData:
    """The toy oscillators' test set (:func:`sepmodels.data.toy.toy_test_set`), at the toy rate."""

    sample_rate: int = toy.SAMPLE_RATE

    @property
    def name(self) -> str:
        return "toy"

    @property
    def sources(self) -> tuple[str, ...]:
        return toy.SOURCES

    def clean(self, n: int, length: int, seed: int = 0) -> torch.Tensor:
        """``[n, 4, length]`` toy test clips."""
        return _clips(self, n, length, seed).clone()

    def _read(self, n: int, length: int, seed: int) -> torch.Tensor:
        return toy.toy_test_set(n, length, seed=seed, sample_rate=self.sample_rate)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "split": "test"}

    def train_options(self) -> dict[str, Any]:
        return {"data": "toy"}


@dataclass(frozen=True)
class MusdbTestData:
    """Aligned crops of the musdb test split (:meth:`sepmodels.data.musdb.MusdbData.aligned`).

    Arguments:
        root: the musdb18 or musdb18-HQ folder (or ``make-stems`` output).
        mono: ``left`` (the thesis) or ``mean`` (a downmix, as the stems benchmark's clips).
    """

    root: str
    mono: str = "left"

    def __post_init__(self) -> None:
        if self.mono not in ("left", "mean"):
            raise ValueError(f"mono must be 'left' or 'mean', got {self.mono!r}")

    @property
    def name(self) -> str:
        return "musdb"

    @property
    def sources(self) -> tuple[str, ...]:
        from sepmodels.data.musdb import SOURCES

        return SOURCES

    @property
    def sample_rate(self) -> int:
        from sepmodels.data.musdb import SAMPLE_RATE

        return SAMPLE_RATE

    def clean(self, n: int, length: int, seed: int = 0) -> torch.Tensor:
        """``[n, 4, length]`` crops of the test tracks, the four stems of a clip from the same place."""
        return _clips(self, n, length, seed).clone()

    def _read(self, n: int, length: int, seed: int) -> torch.Tensor:
        from sepmodels.data.musdb import MusdbConfig, MusdbData  # the musdb package loads only when read

        return MusdbData(MusdbConfig(self.root, mono=self.mono), "test").aligned(n, length, seed)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "split": "test", "root": self.root, "mono": self.mono}

    def train_options(self) -> dict[str, Any]:
        return {"data": "musdb", "root": self.root, "mono": self.mono}


TOY = ToyTestData()


def test_data_from(description: dict[str, Any] | None) -> TestData:
    """The test data a results file's description names (``None``, or no name, is toy); other keys (seed, n,
    length) are ignored."""
    name = "toy" if description is None else description.get("name", "toy")
    if name == "toy":
        return TOY
    if name == "musdb":
        if not description.get("root"):
            raise ValueError("musdb test data needs its root folder; the description names none")
        return MusdbTestData(str(description["root"]), str(description.get("mono", "left")))
    raise ValueError(f"unknown test data {name!r}; expected toy or musdb")


test_data_from.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, whatever its name
