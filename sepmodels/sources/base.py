"""What every source model that is not a network shares (the exact toy prior, the wave and harmonic priors).

They run on the CPU in float64, have no weights to freeze, can stand in for the likelihood of priors of the
same sources at the same rate, and the fitted ones save and load a checkpoint of their own class: a subclass
names that class (:attr:`SourceModel.checkpoint_class`), says what it is in one phrase, builds itself from a
checkpoint (``from_checkpoint``) and says where its shipped file is (``shipped_path``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch

from sepmodels.checkpoint import CheckpointError, load_model_file, save_checkpoint


class SourceModel:
    """The shared half of the :class:`~sepmodels.priors.Prior` contract of CPU source models."""

    names: tuple[str, ...]
    sample_rate: int
    device = torch.device("cpu")
    checkpoint_class: ClassVar[str | None] = None  # fitted models: the ``class`` entry of their checkpoint
    checkpoint_what: ClassVar[str] = ""  # and what such a file is, for errors

    def __len__(self) -> int:
        return len(self.names)

    def to(self, device: str | torch.device) -> SourceModel:
        if torch.device(device).type != "cpu":
            raise ValueError(f"{type(self).__name__} runs on the CPU only (float64 FFTs), not on {device}")
        return self

    def freeze(self) -> SourceModel:
        """Nothing to freeze (no weights); for the trainer, as :meth:`PriorSet.freeze`."""
        return self

    def can_judge(self, other: object) -> bool:
        """Whether this model can stand in for ``other``'s missing likelihood: same sources and rate."""
        return (
            tuple(getattr(other, "names", ())) == tuple(self.names)
            and getattr(other, "sample_rate", 0) == self.sample_rate
        )

    # -- files (fitted models) -------------------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} has nothing to save")

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, self.payload())

    @classmethod
    def shipped_path(cls) -> Path:
        raise NotImplementedError(f"{cls.__name__} ships no file")

    @classmethod
    def check_class(cls, ckpt: dict[str, Any], where: str) -> None:
        """One line when ``ckpt`` is not a checkpoint of this model."""
        if ckpt.get("class") != cls.checkpoint_class:
            raise CheckpointError(f"{where} holds a {ckpt.get('class')!r}, not {cls.checkpoint_what}")

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], where: str = "checkpoint") -> SourceModel:
        raise NotImplementedError(f"{cls.__name__} has no checkpoint")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> SourceModel:
        """Load from ``path``, or the shipped file when None; a wrong or broken file is one line."""
        where = Path(path) if path is not None else cls.shipped_path()
        model, _ = load_model_file(where, str(cls.checkpoint_class), cls.checkpoint_what,
                                   lambda ckpt: cls.from_checkpoint(ckpt, str(where)))  # fmt: skip
        return model


__all__ = ["SourceModel"]
