"""The energy a training run draws and the CO2 it stands for, read as it runs.

:class:`EnergyMeter` asks CodeCarbon (``codecarbon``, offline mode: no network) for the energy drawn so far
by the CPU, the GPU (NVML) and the RAM. CodeCarbon reads RAPL counters or NVML where the machine exposes them
and otherwise estimates from the processor's rated power and its load; :attr:`EnergyReading.method` says
which. Where CodeCarbon cannot start at all, the meter falls back to a stated estimate, ``FALLBACK_WATTS``
per busy core from this process's CPU time, and says so: a training never fails for want of a meter.

Two CO2 figures are kept:

- CodeCarbon's, with the carbon intensity of ``country``'s grid and a PUE of 1 (the machine itself);
- the spectrogram-inpainting paper's formula, ``CO2e = 0.477 kg/kWh x 1.58 (PUE) x energy``
  (Strubell et al., 2019), applied to all the energy measured rather than the GPU's alone as in the paper.

Example:
    >>> meter = EnergyMeter(use_codecarbon=False).start()
    >>> reading = meter.read()
    >>> reading.energy_kwh >= 0 and reading.method.startswith("estimate")
    True
    >>> meter.stop()
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

PAPER_KG_PER_KWH = 0.477
PAPER_PUE = 1.58
FALLBACK_WATTS = 15.0  # per fully busy core, when nothing can be measured (a stated guess, not a reading)


def paper_co2_kg(energy_kwh: float) -> float:
    """The paper's formula: ``0.477 kg/kWh x PUE 1.58 x energy``."""
    return PAPER_KG_PER_KWH * PAPER_PUE * energy_kwh


@dataclass(frozen=True)
class EnergyReading:
    """Totals since the meter started.

    Attributes:
        seconds: wall-clock time; ``energy_kwh``: energy drawn; ``power_w``: mean power since the previous
        reading; ``co2_kg``: CodeCarbon's CO2e (the country's grid, PUE 1); ``co2_paper_kg``: the paper's
        formula; ``method``: how the energy was obtained.
    """

    seconds: float
    energy_kwh: float
    power_w: float
    co2_kg: float
    co2_paper_kg: float
    method: str


class EnergyMeter:
    """Reads the energy a process draws (see the module docstring); ``start``, ``read`` as often as wanted
    (a reading newer than ``interval`` seconds is reused), ``stop``.

    Arguments:
        country: ISO 3166 alpha-3 code of the grid whose carbon intensity CodeCarbon uses.
        interval: seconds between fresh readings (and between CodeCarbon's own power measurements).
        use_codecarbon: False for the stated estimate only.
    """

    def __init__(self, country: str = "FRA", interval: float = 2.0, use_codecarbon: bool = True) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.country, self.interval, self.use_codecarbon = country, interval, use_codecarbon
        self._tracker: Any = None
        self._latest: Any = None
        self._started = 0.0
        self._cpu0 = 0.0
        self._last: EnergyReading | None = None
        self.method = "not started"

    def start(self) -> EnergyMeter:
        self._started, self._cpu0 = time.perf_counter(), time.process_time()
        self.method = f"estimate: {FALLBACK_WATTS:g} W per busy core from this process's CPU time (no meter)"
        if self.use_codecarbon:
            try:
                self._tracker = self._codecarbon()
                self._tracker.start()
                self.method = "codecarbon"
            except Exception as err:  # any failure of the meter leaves the training running, on the estimate
                log.warning("no energy meter (%s); using a stated estimate", str(err).splitlines()[0][:120])
                self._tracker = None
        return self

    def _codecarbon(self) -> Any:
        from codecarbon import OfflineEmissionsTracker
        from codecarbon.output_methods.base_output import BaseOutput

        meter = self

        class _Latest(BaseOutput):
            def out(self, total: Any, delta: Any) -> None:
                meter._latest = total

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        return OfflineEmissionsTracker(
            country_iso_code=self.country, measure_power_secs=self.interval, output_methods=[],
            log_level="error", output_handlers=[_Latest()], tracking_mode="process", project_name="sepmodels",
        )  # fmt: skip

    def read(self) -> EnergyReading:
        """The totals now (or the last reading if it is younger than ``interval``)."""
        now = time.perf_counter() - self._started
        if self._last is not None and now - self._last.seconds < self.interval:
            return self._last
        if self._tracker is not None:
            try:
                self._tracker.flush()
                data = self._latest
                energy, co2 = float(data.energy_consumed), float(data.emissions)
                self.method = self._describe(data)
            except Exception as err:
                log.warning("the energy meter stopped answering (%s); using a stated estimate", err)
                self._tracker = None
        if self._tracker is None:
            energy = FALLBACK_WATTS * (time.process_time() - self._cpu0) / 3.6e6
            co2 = float("nan")
        previous = self._last or EnergyReading(0.0, 0.0, 0.0, 0.0, 0.0, self.method)
        span = now - previous.seconds
        power = (energy - previous.energy_kwh) * 3.6e6 / span if span > 0 else 0.0
        self._last = EnergyReading(now, energy, power, co2, paper_co2_kg(energy), self.method)
        return self._last

    @staticmethod
    def _describe(data: Any) -> str:
        parts = [f"CPU {data.cpu_model or 'unknown'}"]
        if int(data.gpu_count or 0):
            parts.append(f"{data.gpu_count} GPU {data.gpu_model} (NVML)")
        rapl = os.path.exists("/sys/class/powercap/intel-rapl")
        how = "RAPL" if rapl else "rated power x load (no RAPL here)"
        return f"codecarbon {', '.join(parts)}: CPU by {how}; RAM by its size; grid {data.country_iso_code}"

    def stop(self) -> None:
        if self._tracker is not None:
            try:
                self._tracker.stop()
            except Exception as err:
                log.warning("the energy meter did not stop cleanly (%s)", err)
            self._tracker = None


__all__ = ["PAPER_KG_PER_KWH", "PAPER_PUE", "EnergyMeter", "EnergyReading", "paper_co2_kg"]
