"""A background thread that advances a sampler generator, so the UI never waits on a sampling step.

The UI calls :meth:`SamplerRunner.start`, :meth:`pause`, :meth:`step` and :meth:`reset`, and reads
:attr:`latest` and :meth:`history` whenever it likes (from a periodic callback): the newest iterate wins. A view
that polls one takes :class:`LiveView` for its periodic refresh and its end with the browser session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import panel as pn
import torch

from sepmodels.inference.langevin import Iterate


@dataclass(frozen=True)
class Record:
    """The scalars of one iterate, kept for the curves against step."""

    step: int
    sigma: float
    mix_error: float
    log_prob: tuple[float, ...] | None  # mean nats per sample, per source (None for score priors)
    si_sdr: tuple[float, ...] | None  # dB per source
    chain: int = 0  # the residual sweep's chain (-1: its closing result)


class SamplerRunner:
    """Runs ``make()``'s iterates on a daemon thread, one step at a time, until paused or finished.

    Arguments:
        make: returns a fresh generator of :class:`Iterate` (called on the first step after each reset).
    """

    def __init__(self, make: Callable[[], Iterator[Iterate]]) -> None:
        self._make = make
        self._gen: Iterator[Iterate] | None = None
        self._cond = threading.Condition()
        self._running = False
        self._pending = 0  # single steps asked for while paused
        self._closed = False
        self._finished = False
        self._latest: Iterate | None = None
        self._records: list[Record] = []
        self._error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="sampler-runner", daemon=True)
        self._thread.start()

    # -- control (any thread) ---------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if not self._finished:
                self._running = True
                self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._running = False
            self._pending = 0

    def step(self) -> None:
        """Pause, then advance exactly one step."""
        with self._cond:
            self._running = False
            if not self._finished:
                self._pending += 1
                self._cond.notify_all()

    def reset(self, make: Callable[[], Iterator[Iterate]] | None = None) -> None:
        """Stop and forget the run; the next start begins a new one (from ``make`` if given)."""
        with self._cond:
            self._running, self._pending = False, 0
            if make is not None:
                self._make = make
            self._gen, self._latest, self._records = None, None, []
            self._finished, self._error = False, None

    def close(self, timeout: float = 5.0) -> None:
        """End the thread (when the browser session closes)."""
        with self._cond:
            self._closed, self._running = True, False
            self._cond.notify_all()
        self._thread.join(timeout)

    # -- state (any thread) ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def latest(self) -> Iterate | None:
        return self._latest

    @property
    def error(self) -> str | None:
        """The message of an exception the sampler raised, if any (the run then stops)."""
        return self._error

    def history(self) -> list[Record]:
        with self._cond:
            return list(self._records)

    # -- the thread ------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not (self._running or self._pending):
                    self._cond.wait()
                if self._closed:
                    return
                if self._pending:
                    self._pending -= 1
                if self._gen is None:
                    self._gen = self._make()
                gen = self._gen
            try:
                it = next(gen)
            except StopIteration:
                with self._cond:
                    if gen is self._gen:
                        self._finished, self._running, self._pending = True, False, 0
                continue
            except Exception as err:  # shown in the UI instead of killing the thread silently
                with self._cond:
                    self._error = f"{type(err).__name__}: {err}"
                    self._running, self._pending = False, 0
                    self._gen = None
                continue
            if not bool(torch.isfinite(it.sources).all()):  # a diverged run only burns time: stop it and say so
                with self._cond:
                    if gen is self._gen:
                        self._error = (f"the run diverged at step {it.step} (sigma {it.sigma:.3g}): the estimates "
                                       "are no longer finite numbers")  # fmt: skip
                        self._running, self._pending, self._gen = False, 0, None
                        self._finished = True
                continue
            record = Record(
                it.step,
                it.sigma,
                it.mix_error,
                None if it.log_prob is None else tuple(float(v) for v in it.log_prob.mean(dim=-1)),
                None if it.si_sdr is None else tuple(float(v) for v in it.si_sdr),
                it.chain,
            )
            with self._cond:
                if gen is self._gen:  # a reset during the step discards it
                    self._latest = it
                    self._records.append(record)
                # finished only when the generator ends: the residual sweep's closing result follows its last step


class LiveView:
    """For a view that shows a :class:`SamplerRunner` (``self.runner``) by polling it: :meth:`attach` starts the
    periodic ``self.refresh`` every ``self.refresh_ms`` in a served session, once, and ends the runner's thread
    when the browser session closes."""

    _callback = None

    def attach(self) -> None:
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=self.refresh_ms)
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def close(self) -> None:
        if self._callback is not None:
            self._callback.stop()
        self.runner.close()
