r"""Seconds per MNIST-size epoch: tapjax (jitted lax.scan) vs PyTorch CPU eager, side by side.

    python -m benchmarks.train_throughput [--repeats=3] [--out=benchmarks/results/train_throughput.json]

One epoch = 60,000 samples in batches of 32 (1,875 SGD-momentum steps) of the 784-512-512-512-10
net, standard (ReLU) and binarized (step/STE), L2 multi-class hinge loss with margin 10. The
images are the embedded real MNIST subset tiled to 60,000. Also measures, in the same run, the
machine's float32 matmul rate (4096² and the batch-32 shapes of training) and reports the
fraction of the matmul-limited epoch time reached. Compile time is reported separately; each
timing is min / median over ``--repeats`` epochs. PyTorch is optional
(``pip install torch==2.13.0``); without it only the JAX side runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from tapjax.data import load_embedded
from tapjax.models import ModelConfig, init_params, preprocess
from tapjax.training import TrainConfig, epoch_batches, make_chunk_fn, make_optimizer

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 3, "Timed epochs per framework and net.")
flags.DEFINE_integer("samples", 60000, "Samples per epoch.")
flags.DEFINE_string("out", "benchmarks/results/train_throughput.json", "JSON results.")
flags.DEFINE_bool("torch", True, "Also time PyTorch eager (if importable).")

SIZES = (784, 512, 512, 512, 10)


def epoch_flops(n: int, sizes=SIZES) -> float:
    """Matmul FLOPs of one epoch: forward 2·n·ΣN_{k-1}N_k, backward dW (same) and dX (all
    layers but the first: the input needs no gradient)."""
    layer = [2.0 * n * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return sum(layer) * 3 - layer[0]


def matmul_rates() -> dict[str, float]:
    """float32 GFLOP/s of XLA:CPU for a 4096² product and the training shapes (batch 32)."""
    out = {}
    a = jnp.ones((4096, 4096), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        f(a).block_until_ready()
        ts.append(time.perf_counter() - t)
    out["square_4096"] = 2 * 4096 ** 3 / min(ts) / 1e9
    # the three products of a training step, per layer, 1875 times in a scan
    ws = [jnp.ones((i, o), jnp.float32) * 0.01 for i, o in zip(SIZES[:-1], SIZES[1:])]
    xs = jnp.ones((1875, 32, 784), jnp.float32)

    @jax.jit
    def shapes(ws, xs):
        def body(c, x):
            h, acc = x, 0.0
            for w in ws:
                y = h @ w                      # forward
                acc = acc + (h.T @ y).sum()    # dW-shaped product
                acc = acc + (y @ w.T).sum()    # dX-shaped product
                h = y
            return c + acc, None
        return jax.lax.scan(body, 0.0, xs)[0]

    shapes(ws, xs).block_until_ready()
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        shapes(ws, xs).block_until_ready()
        ts.append(time.perf_counter() - t)
    flops = 1875 * sum(3 * 2.0 * 32 * i * o for i, o in zip(SIZES[:-1], SIZES[1:]))
    out["batch32_training_shapes"] = flops / min(ts) / 1e9
    return out


def data(n: int):
    d = load_embedded()
    reps = -(-n // d.x_train.shape[0])
    return np.tile(d.x_train, (reps, 1))[:n], np.tile(d.y_train, reps)[:n]


def time_jax(kind: str, x, y, repeats: int) -> dict:
    cfg = TrainConfig(model=ModelConfig(kind=kind))
    chunk = make_chunk_fn(cfg)
    params = init_params(cfg.model, jax.random.PRNGKey(0))
    opt = make_optimizer(cfg).init(params)
    xp, yj = preprocess(jnp.asarray(x), kind), jnp.asarray(y)
    key = jax.random.PRNGKey(1)
    t = time.perf_counter()
    idx = epoch_batches(key, 0, len(y), 32)
    params, opt, losses = chunk(params, opt, xp, yj, idx)
    losses.block_until_ready()
    first = time.perf_counter() - t
    ts = []
    for e in range(1, repeats + 1):
        idx = epoch_batches(key, e, len(y), 32)
        idx.block_until_ready()
        t = time.perf_counter()
        params, opt, losses = chunk(params, opt, xp, yj, idx)
        losses.block_until_ready()
        ts.append(time.perf_counter() - t)
    return {"first_epoch_incl_compile_s": first, "min_s": min(ts), "median_s": statistics.median(ts),
            "final_loss": float(losses[-1])}


def time_torch(kind: str, x, y, repeats: int) -> dict | None:
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)

    class STE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return torch.where(v >= 0, 1.0, -1.0)

        @staticmethod
        def backward(ctx, g):
            (v,) = ctx.saved_tensors
            return g * (v.abs() <= 1).to(g.dtype)

    layers = [torch.nn.Linear(i, o, bias=False) for i, o in zip(SIZES[:-1], SIZES[1:])]
    for lyr in layers:
        torch.nn.init.kaiming_normal_(lyr.weight, nonlinearity="relu")
    act = STE.apply if kind == "binarized" else torch.relu

    def net(v):
        for k, lyr in enumerate(layers):
            v = lyr(v)
            if k < len(layers) - 1:
                v = act(v)
        return v

    params = [p for lyr in layers for p in lyr.parameters()]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    loss_fn = torch.nn.MultiMarginLoss(p=2, margin=10.0)
    xt = torch.tensor(x, dtype=torch.float32) / 255.0
    if kind == "binarized":
        xt = torch.where(xt - 0.5 >= 0, 1.0, -1.0)
    yt = torch.tensor(y, dtype=torch.long)

    def epoch(seed):
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(yt), generator=g)
        loss = None
        for i in range(len(yt) // 32):
            b = perm[i * 32:(i + 1) * 32]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[b]), yt[b])
            loss.backward()
            opt.step()
        return float(loss)

    t = time.perf_counter()
    epoch(0)
    first = time.perf_counter() - t
    ts = []
    for e in range(1, repeats + 1):
        t = time.perf_counter()
        last = epoch(e)
        ts.append(time.perf_counter() - t)
    return {"first_epoch_s": first, "min_s": min(ts), "median_s": statistics.median(ts),
            "final_loss": last, "torch_version": torch.__version__, "threads": torch.get_num_threads()}


def main(argv):
    del argv
    x, y = data(FLAGS.samples)
    rates = matmul_rates()
    flops = epoch_flops(FLAGS.samples)
    res = {"device": str(jax.devices()[0]), "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "jax_version": jax.__version__, "dtype": "float32", "samples": FLAGS.samples, "batch": 32,
           "epoch_matmul_gflop": flops / 1e9, "matmul_gflops": rates, "nets": {}}
    for kind in ("standard", "binarized"):
        j = time_jax(kind, x, y, FLAGS.repeats)
        row = {"jax": j}
        limit = flops / (rates["batch32_training_shapes"] * 1e9)
        row["matmul_limited_epoch_s"] = limit
        row["fraction_of_matmul_limit"] = limit / j["min_s"]
        t = time_torch(kind, x, y, FLAGS.repeats) if FLAGS.torch else None
        if t:
            row["torch_eager"] = t
            row["speedup_vs_torch_min"] = t["min_s"] / j["min_s"]
            row["speedup_vs_torch_median"] = t["median_s"] / j["median_s"]
        res["nets"][kind] = row
        print(f"{kind:9s} jax {j['min_s']:.2f}s (median {j['median_s']:.2f}, compile+1st {j['first_epoch_incl_compile_s']:.2f})"
              + (f" | torch {t['min_s']:.2f}s (median {t['median_s']:.2f}) | speedup {row['speedup_vs_torch_min']:.2f}x" if t else "")
              + f" | matmul limit {limit:.2f}s = {100 * row['fraction_of_matmul_limit']:.0f}% reached")
    print(f"matmul GFLOP/s: {rates}")
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
