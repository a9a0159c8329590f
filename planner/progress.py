"""Progress lines for the long commands (demo, benchmark, bench-speed): episodes and steps, success so far, planning
ms. On a terminal one line is rewritten in place; in a log (CI, ``| tee``) whole lines, at most one every ``every_s``
seconds plus one at each episode's first step and end, so a log never fills with carriage returns."""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from typing import Any, TextIO


class Progress:
    """Reports a run of ``episodes`` episodes named ``label``; the apps call :meth:`start`, :meth:`step` (as the
    episode loop's ``on_step``), :meth:`end` and finally :meth:`close` with where the outputs are."""

    def __init__(
        self,
        label: str,
        episodes: int = 1,
        stream: TextIO | None = None,
        every_s: float | None = None,
        tty: bool | None = None,
    ) -> None:
        self.label, self.episodes = label, int(episodes)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.every_s = every_s if every_s is not None else (0.2 if self.tty else 10.0)
        self.done = self.successes = 0
        self.plan_ms: list[float] = []  # every step of this run, for the p50
        self.t0 = time.monotonic()
        self._last = -float("inf")
        self._episode = ""
        self._max_steps: int | None = None
        self._first = True

    # ------------------------------------------------------------------------------------------------ output
    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            if not final:  # a status line longer than the terminal would wrap and no longer be rewritten in place
                text = text[: max(20, shutil.get_terminal_size().columns - 1)]
            self.stream.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        """A line that always shows (on a terminal it replaces the status line being rewritten)."""
        self._write(f"[{self.label}] {text}", final=True)

    def update(self, text: str, force: bool = False) -> None:
        """A throttled status line (rewritten in place on a terminal)."""
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        self._write(f"[{self.label}] {text}", final=False)

    # ------------------------------------------------------------------------------------------------ episodes
    def _so_far(self) -> str:
        rate = f"success {self.successes}/{self.done} so far" if self.done else "no episode finished yet"
        ms = f"plan {statistics.median(self.plan_ms):.0f} ms p50" if self.plan_ms else "plan - ms"
        return f"{rate} | {ms} | {time.monotonic() - self.t0:.0f} s"

    def start(self, seed: int, max_steps: int | None = None) -> None:
        """An episode begins (shown at once)."""
        self._episode = f"episode {self.done + 1}/{self.episodes} (seed {seed})"
        self._max_steps = max_steps
        self._first = True
        self.update(f"{self._episode} starting | {self._so_far()}", force=True)

    def step(self, step: int, info: dict[str, Any]) -> None:
        """After each executed step: ``step`` counts from 1; ``info`` is the agent's step info."""
        ms = info.get("plan_ms")
        if ms is not None:
            self.plan_ms.append(float(ms))
        of = f"/{self._max_steps}" if self._max_steps else ""
        phase = f" {info['phase']}" if info.get("phase") else ""
        last = f"{float(ms):.0f} ms" if ms is not None else "-"
        text = f"{self._episode} step {step}{of}{phase} (plan {last}) | {self._so_far()}"
        self.update(text, force=self._first)  # the first step always shows: progress within seconds of the start
        self._first = False

    def end(self, success: bool, steps: int, extra: str = "") -> None:
        """An episode ended (always shown, one line)."""
        self.done += 1
        self.successes += int(bool(success))
        outcome = "success" if success else "no success"
        self.line(f"{self._episode} {outcome} in {steps} steps{extra} | {self._so_far()}")

    def close(self, outputs: str) -> None:
        """The closing line: where the outputs are."""
        self.line(f"done in {time.monotonic() - self.t0:.0f} s; outputs: {outputs}")
