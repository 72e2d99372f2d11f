"""Which shipped music model the name ``stems`` selects (``separate --priors stems``, the apps).

``bench/stems.py`` measures every shipped music method on the validation split (never the test split) and
records them here; ``stems`` is the best of them by mean SI-SDRi over both validation conditions.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from sepmodels.fileio import atomic_path

CHOICE = "stems.json"
METHODS = ("nmf", "supervised", "frames")  # the shipped music methods that need no truth


def choice_path() -> Path:
    return Path(str(resources.files("sepmodels") / "checkpoints" / CHOICE))


def write_choice(valid: dict[str, dict[str, float]], path: Path | None = None) -> str:
    """Record each method's validation SI-SDRi per condition (beside the methods already recorded, which a
    bench that measures only some keeps) and the best of all by their mean; returns it."""
    unknown = set(valid) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown music methods {sorted(unknown)}; shipped ones are {', '.join(METHODS)}")
    p = path or choice_path()
    try:
        before = json.loads(p.read_text()).get("valid_si_sdri", {}) if p.is_file() else {}
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"{p} is not a stems choice file; remove it and run the music benches again") from None
    valid = {**{m: f for m, f in before.items() if m in METHODS}, **valid}
    mean = {m: sum(f.values()) / len(f) for m, f in valid.items()}
    best = max(mean, key=mean.get)
    with atomic_path(p) as tmp:
        tmp.write_text(json.dumps({"method": best, "valid_si_sdri": valid, "valid_mean": mean}, indent=2) + "\n")
    return best


def stems_method(path: Path | None = None) -> str:
    """The method ``stems`` names: the recorded choice, else the NMF dictionaries."""
    p = path or choice_path()
    if not p.is_file():
        return "nmf"
    method = json.loads(p.read_text()).get("method", "nmf")
    return method if method in METHODS else "nmf"
