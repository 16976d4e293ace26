"""W3: SoftHebb training throughput (images per second), rate and spiking, against backprop on the same layer.

Workload: MNIST-5k images (28x28), one layer of 2,000 neurons learning unsupervised for one pass over
``--images`` training images, as in ``softhebb_mnist.py``:
* SoftHebb, rate (``networks.softhebb.train_rate``): mini-batches of 16;
* SoftHebb, spiking (``train_spiking``): the Loihi form of the rule, 40 steps per image, 32 images at
  once (replicas), with the engine dense, event-driven and as the native C++ loop (CPU) or dense and in
  CUDA graphs (GPU);
* the peer: the same 784 -> 2,000 layer plus a 10-way head trained end to end by backprop (Adam,
  mini-batches of 64, one epoch) -- the usual way to train that layer; its time includes scoring
  100 test images once. It runs on the CPU (``networks.baselines`` has no device argument).
Every method gets one untimed warm-up on a few images.

    python benchmarks/w3_softhebb.py            # 1,000 images, 2,000 neurons (~1 min on 2 cores)
    python benchmarks/w3_softhebb.py --quick    # 200 images, 400 neurons (~10 s)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speedlib import device_line, ratio, save_json, table, timed, versions  # noqa: E402

from neuro import Simulator  # noqa: E402
from neuro.native import compiler  # noqa: E402
from neuro.datasets import load_mnist5k  # noqa: E402
from networks import softhebb  # noqa: E402
from networks.baselines import backprop_mlp_accuracy  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--neurons", type=int, default=2000)
    parser.add_argument("--replicas", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="out/bench_w3")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_images, n_neurons = (200, 400) if args.quick else (args.images, args.neurons)
    data = load_mnist5k()
    x, y = data.x_train[:n_images], data.y_train[:n_images]
    cfg = softhebb.SoftHebbConfig(n_neurons=n_neurons)
    spk = softhebb.SpikingConfig()
    n_in = x.shape[1]
    rows: List[Dict[str, object]] = []

    sim = softhebb.rate_simulator(softhebb.build_rate(n_in, cfg), cfg, device=args.device)
    softhebb.train_rate(softhebb.rate_simulator(softhebb.build_rate(n_in, cfg), cfg, device=args.device),
                        x[:64], cfg.batch)  # warm-up, as every method gets
    seconds = timed(lambda: softhebb.train_rate(sim, x, cfg.batch), args.device)
    rows.append({"method": f"SoftHebb rate, batch {cfg.batch}", "seconds": seconds})

    net = softhebb.build_spiking(n_in, cfg, spk)
    # CPU: event-driven against dense steps; CUDA: dense steps against CUDA graphs of one presentation each.
    modes = {"event-driven": dict(event_driven=True), "dense": dict(event_driven=False)}
    if args.device == "cpu" and compiler():
        modes["native C++ loop"] = dict(native=True)
    if args.device != "cpu":
        modes = {"dense": dict(event_driven=False), "CUDA graphs": dict(graph_steps=spk.steps)}
    for mode, kwargs in modes.items():
        spiking = Simulator(net, replicas=args.replicas, device=args.device, **kwargs)
        softhebb.train_spiking(spiking, x[: 2 * args.replicas], spk)  # warm-up (a graph's capture too)
        spiking.reset()  # as new: thresholds, traces and weights of the network
        spiking.set_weights("ff", net.projections["ff"].weights)
        stats = {}
        seconds = timed(lambda: stats.update(softhebb.train_spiking(spiking, x, spk)), args.device)
        rows.append({"method": f"SoftHebb spiking, {spk.steps} steps/image, R = {args.replicas}, {mode}",
                     "seconds": seconds, "spikes_per_image": stats["spikes_per_image"]})

    w0 = softhebb.initial_weights(n_neurons, n_in, cfg.init_radius, cfg.seed)
    backprop_mlp_accuracy(x[:64], y[:64], data.x_test[:10], data.y_test[:10], w0, epochs=1)  # warm-up (Adam, autograd)
    seconds = timed(lambda: backprop_mlp_accuracy(x, y, data.x_test[:100], data.y_test[:100], w0, epochs=1))
    rows.append({"method": "backprop (peer), batch 64, Adam", "seconds": seconds})

    rate = rows[0]["seconds"]
    for r in rows:
        r["images_per_second"] = n_images / r["seconds"]
        r["time / SoftHebb rate"] = ratio(r["seconds"], rate)
    print(f"W3: one pass over {n_images} MNIST-5k images, {n_neurons} neurons; {device_line(args.device, args.threads)}")
    print(table(rows, ["method", "seconds", "images_per_second", "time / SoftHebb rate", "spikes_per_image"]))
    save_json(Path(args.out) / "w3.json", {"rows": rows, "images": n_images, "neurons": n_neurons,
                                           "device": device_line(args.device, args.threads),
                                           "versions": versions(["torch", "norse"]), "argv": sys.argv[1:]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
