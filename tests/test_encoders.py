"""Input encoders, as seen through an input population."""
import pytest
import torch

from neuro import LatencyEncoder, Network, PoissonEncoder, Simulator


def spikes_of(encoder, values, steps, replicas=1, seed=0):
    net = Network(dt=1e-3)
    net.input("inp", len(values), encoder=encoder)
    sim = Simulator(net, replicas=replicas, seed=seed, dtype=torch.float64)
    return sim.run(steps, {"inp": torch.tensor(values)}, monitors=["inp.spikes"])["inp.spikes"]


def test_poisson_rate_follows_value():
    values = [0.0, 0.25, 1.0]
    s = spikes_of(PoissonEncoder(max_rate=200.0), values, steps=2000, replicas=4)
    rate = s.mean(dim=(0, 1)) / 1e-3  # Hz
    assert rate[0] == 0
    assert rate[1] == pytest.approx(50.0, rel=0.15)
    assert rate[2] == pytest.approx(200.0, rel=0.1)
    # Replicas draw independent spikes.
    assert not torch.equal(s[:, 0], s[:, 1])


def test_poisson_rejects_rates_above_one_spike_per_step():
    with pytest.raises(ValueError, match="exceeds one spike per step"):
        spikes_of(PoissonEncoder(max_rate=2000.0), [0.5], steps=1)
    with pytest.raises(ValueError, match="max_rate must be positive"):
        PoissonEncoder(max_rate=0.0)


def test_latency_fires_once_per_window_earlier_for_larger_values():
    s = spikes_of(LatencyEncoder(window=11), [1.0, 0.5, 0.1, 0.0], steps=22)[:, 0]
    first = [int(torch.nonzero(s[:11, k])[0]) if s[:11, k].any() else None for k in range(4)]
    assert first == [0, 5, 9, None]
    assert s[:11].sum(0).tolist() == [1, 1, 1, 0]
    assert torch.equal(s[:11], s[11:])  # the window repeats
    with pytest.raises(ValueError, match="window"):
        LatencyEncoder(window=0)


def test_poisson_values_above_one_fire_at_most_at_max_rate():
    import torch as _torch

    from neuro import PoissonEncoder as _Poisson

    g = _torch.Generator().manual_seed(0)
    spikes = _torch.stack([_Poisson(max_rate=100.0).step(_torch.full((2000,), 5.0), k, 1e-3, g) for k in range(50)])
    assert 0.08 < float(spikes.mean()) < 0.12  # 100 Hz at dt = 1 ms, not 500 Hz
