"""What a run records: monitors read every ``every`` steps, spike counts summed between records.

Shared by every way a simulator runs its steps (torch steps, CUDA graph chunks, the native loop) and
by the fixed-point simulator, so a monitor means the same everywhere."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm


@dataclass
class Recording:
    """Monitored values: ``data[name]`` has shape ``(K, R, ...)`` for the K recorded steps."""

    data: Dict[str, torch.Tensor] = field(default_factory=dict)
    steps: Dict[str, List[int]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.data:
            raise KeyError(f"nothing recorded under {name!r}; recorded: {sorted(self.data)}")
        return self.data[name]

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def then(self, later: "Recording") -> "Recording":
        """This recording followed by ``later``'s, of a run that went on (the same monitors)."""
        if set(later.data) != set(self.data):
            raise ValueError(f"then: the recordings monitor {sorted(self.data)} and {sorted(later.data)}")
        return Recording({k: torch.cat([v, later.data[k]]) for k, v in self.data.items()},
                         {k: self.steps[k] + later.steps[k] for k in self.steps})


def count_monitor(monitor: str) -> Optional[str]:
    """The population of a spike-count monitor ``"population.count"``, else ``None``."""
    target, _, var = monitor.partition(".")
    return target if var == "count" else None


class Recorder:
    """Collects ``monitors`` every ``every`` steps of a run (``k``: the run's step index, from 0).

    ``"population.count"`` is the number of spikes of each neuron summed over the ``every`` steps
    up to the record (``read`` gives it from ``"population.spikes"``); any other monitor is a copy of
    ``read(monitor)`` at the record."""

    def __init__(self, monitors: Sequence[str], read: Callable[[str], torch.Tensor], clock: Callable[[], int],
                 every: int = 1) -> None:
        if int(every) != every or every < 1:
            raise ValueError(f"every must be a positive integer number of steps, got {every!r}")
        # a monitor named twice is recorded once
        self.monitors, self.read, self.clock, self.every = list(dict.fromkeys(monitors)), read, clock, int(every)
        for m in self.monitors:  # fail before running on a bad name
            pop = count_monitor(m)
            if pop is None:
                read(m)
                continue
            try:
                read(f"{pop}.spikes")
            except KeyError:
                raise KeyError(f"cannot monitor {m!r}: {pop!r} is not a population") from None
        self.counts = {m: None for m in self.monitors if count_monitor(m) is not None}
        self.values: Dict[str, List[torch.Tensor]] = {m: [] for m in self.monitors}
        self.steps: Dict[str, List[int]] = {m: [] for m in self.monitors}

    def after_step(self, k: int) -> None:
        """Called once step ``k`` of the run is done."""
        for m, acc in self.counts.items():
            z = self.read(f"{count_monitor(m)}.spikes")
            self.counts[m] = z.clone() if acc is None else acc.add_(z)
        if self.monitors and (k + 1) % self.every == 0:
            self.record()

    def record(self, counts: Optional[Mapping[str, torch.Tensor]] = None) -> None:
        """Record every monitor now; ``counts``: spike counts since the last record by population, where
        they were summed elsewhere (the native loop), instead of those summed by :meth:`after_step`."""
        for m in self.monitors:
            if m in self.counts:
                self.values[m].append(self.counts[m] if counts is None else counts[count_monitor(m)])
                self.counts[m] = None
            else:
                self.values[m].append(self.read(m).clone())
            self.steps[m].append(self.clock())

    def extend(self, monitor: str, values: torch.Tensor, steps: Sequence[int]) -> None:
        """Records made elsewhere (a replayed CUDA graph): ``values`` ``(K, ...)`` taken at ``steps``."""
        self.values[monitor].extend(values.unbind(0))
        self.steps[monitor].extend(steps)

    def result(self) -> Recording:
        out = Recording(steps=self.steps)
        for m, v in self.values.items():
            out.data[m] = torch.stack(v) if v else torch.empty(0)
        return out


def record_run(
    steps: int,
    advance: Callable[[int], None],
    read: Callable[[str], torch.Tensor],
    clock: Callable[[], int],
    monitors: Sequence[str],
    every: int = 1,
    progress: bool = False,
) -> Recording:
    """Call ``advance(k)`` for ``k < steps`` and read ``monitors`` every ``every`` steps (see :class:`Recorder`)."""
    check_steps(steps)
    recorder = Recorder(monitors, read, clock, every)
    for k in tqdm(range(steps), disable=not progress, desc="simulating", unit="step"):
        advance(k)
        recorder.after_step(k)
    return recorder.result()


def check_steps(steps: int) -> None:
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
