"""What every exporter that runs a network needs: the spikes the torch engine would feed, and what a torch
run that it continues had changed.

Lava and Brian2 have no encoders of ours, so encoded inputs are drawn here, exactly as
:class:`neuro.Simulator` draws them, and replayed there as spike trains.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple, Type

import numpy as np
import torch

from neuro import InputPopulation, LearningRule, Network, Simulator
from neuro.engine import TensorLike


def encoded_inputs(
    network: Network,
    steps: int,
    inputs: Mapping[str, TensorLike],
    seed: int = 0,
    generator_state: Optional[torch.Tensor] = None,
) -> Dict[str, np.ndarray]:
    """Input spikes ``(steps, N)`` per input population, exactly as ``Simulator(seed=seed)``
    (or a simulator whose generator is in ``generator_state``) draws them."""
    sim = Simulator(_inputs_only(network), replicas=1, dtype=torch.float64, seed=seed)
    if generator_state is not None:
        sim.generator.set_state(generator_state)
    names = [p.name for p in network.populations.values() if isinstance(p, InputPopulation)]
    rec = sim.run(steps, inputs, monitors=[f"{n}.spikes" for n in names])
    return {n: rec[f"{n}.spikes"][:, 0].numpy() for n in names}


def _inputs_only(network: Network) -> Network:
    # Encoders draw from the generator in population order, whatever else the net holds.
    net = Network(dt=network.dt)
    for p in network.populations.values():
        if isinstance(p, InputPopulation):
            net.input(p.name, p.n, p.encoder)
    return net


def held_or_sequence(values: TensorLike, steps: int, n: int, what: str, error: Type[Exception]) -> np.ndarray:
    """``values`` held ``(n,)`` or per step ``(steps, n)`` as a float64 ``(steps, n)`` array; ``error``
    (naming ``what``) for any other shape or a value that is not finite."""
    v = np.asarray(torch.as_tensor(values, dtype=torch.float64))
    if v.shape == (n,):
        v = np.broadcast_to(v, (steps, n))
    elif v.shape != (steps, n):
        raise error(f"{what}: expected shape ({n},) or ({steps}, {n}), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise error(f"{what}: contains NaN or infinite values")
    return v.copy()


def continued(network: Network, initial: Optional[Simulator]) -> Tuple[Dict[str, object], Dict[str, LearningRule]]:
    """The neuron models and learning rules to run ``network`` with: its own, or those of the simulator
    ``initial`` whose run is continued (models swapped in with ``set_model``, no rules if its ``learning``
    is off, rule parameters as ``set_param`` left them, replica 0)."""
    models = {n: p.model for n, p in network.populations.items() if not isinstance(p, InputPopulation)}
    rules = {n: p.rule for n, p in network.projections.items() if p.rule is not None}
    if initial is None:
        return models, rules
    models.update(initial.models)
    if not initial.learning:
        return models, {}
    return models, {n: r.with_params(**{k: float(v.reshape(-1)[0]) for k, v in initial.params[n].items()})
                    for n, r in rules.items()}
