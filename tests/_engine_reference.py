"""Engine bit-identity reference (issue 15): not a test (about 3 minutes on 2 busy cores).

    python tests/_engine_reference.py run OUT        # train / train_many on tiny nets → OUT
    python tests/_engine_reference.py compare A B    # every file: npz keys, dtypes, array bytes
                                                     # and zip members exact; others byte-exact

``run`` trains, with the code in this checkout: ``train`` for 2 epochs on a 784-32-16-10 net
(standard and binarized, with and without a tiny ``lambda_min`` tc_penalty), uninterrupted,
killed at step 7 and resumed, and on a log schedule extended from 1 to 3 epochs; and
``train_many`` on 3 runs (both kinds) and on 1 run. Run it before and after a change of the
engine and ``compare`` the two folders (zip timestamps inside ``.npz`` are ignored).
"""
import os, sys, zipfile

import dataclasses, os, shutil, sys
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import jax
from tapjax.data import load_embedded
from tapjax.models import ModelConfig
from tapjax.training import TrainConfig, train
from tapjax.tc_regularizer import TcPenalty
from tapjax import multirun



def run(out):
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    d = load_embedded()
    data = dataclasses.replace(d, x_train=d.x_train[:640], y_train=d.y_train[:640],
                               x_val=d.x_val[:200], y_val=d.y_val[:200])


    def cfg(kind, lr=1e-3, seed=0, pen=None, **kw):
        base = dict(model=ModelConfig(kind=kind, widths=(32, 16, 10)), lr=lr, seed=seed, epochs=2,
                    schedule="every", first_epoch_levels=3, tc_penalty=pen)
        base.update(kw)
        return TrainConfig(**base)


    pen = TcPenalty(alpha=0.05, target="lambda_min", beta0=0.3, every_k=3, backend="dense")
    for kind in ("standard", "binarized"):
        for p in (None, pen):
            name = f"train_{kind}_{'pen' if p else 'plain'}"
            c = cfg(kind, pen=p)
            # uninterrupted
            r = train(c, data, os.path.join(out, name), progress=False)
            np.savez(os.path.join(out, name + "_result.npz"),
                     **{"/".join(k): np.asarray(v) for k, v in
                        [(("layer%d" % i,), w["kernel"]) for i, w in enumerate(r.params.values())]})
            # interrupted at step 7 (inside epoch 1, between checkpoints), then resumed
            wd = os.path.join(out, name + "_resumed")
            train(c, data, wd, progress=False, stop_after_step=7)
            train(c, data, wd, progress=False)
            # log schedule, 3 epochs, stopped after epoch 1, extended
            c3 = dataclasses.replace(c, schedule="log:2", epochs=1)
            wd = os.path.join(out, name + "_extended")
            train(c3, data, wd, progress=False)
            train(dataclasses.replace(c3, epochs=3), data, wd, progress=False)

    # train_many: 3 runs of 2 configs (kinds) with distinct seeds / lrs
    cfgs = [cfg("binarized", 1e-3, 0), cfg("standard", 1e-2, 1), cfg("standard", 1e-3, 2)]
    res = multirun.train_many(cfgs, data, [os.path.join(out, f"many{r}") for r in range(3)])
    for r, rr in enumerate(res.results):
        np.savez(os.path.join(out, f"many{r}_result.npz"),
                 **{k: np.asarray(v["kernel"]) for k, v in rr.params.items()})
        with open(os.path.join(out, f"many{r}_history.txt"), "w") as f:
            f.write(repr(rr.history))
    # one-run train_many, same config as train_standard_plain
    res1 = multirun.train_many([cfg("standard")], data, [os.path.join(out, "many_single")])
    print("done", out)


def compare(a, b):
    fa = sorted(os.path.relpath(os.path.join(r, f), a) for r, _, fs in os.walk(a) for f in fs)
    fb = sorted(os.path.relpath(os.path.join(r, f), b) for r, _, fs in os.walk(b) for f in fs)
    bad = 0
    if fa != fb:
        print("file lists differ:", set(fa) ^ set(fb)); bad += 1
    for f in sorted(set(fa) & set(fb)):
        pa, pb = os.path.join(a, f), os.path.join(b, f)
        if f.endswith(".npz"):
            za, zb = np.load(pa), np.load(pb)
            if sorted(za.files) != sorted(zb.files):
                print("keys differ", f); bad += 1; continue
            for k in za.files:
                x, y = za[k], zb[k]
                if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                    d = (np.abs(x.astype(float) - y.astype(float)).max() if x.dtype.kind == "f" and x.shape == y.shape else "n/a")
                    print(f"DIFF {f}:{k} max|d|={d}"); bad += 1
            # the zip members' payload (ignoring zip timestamps)
            with zipfile.ZipFile(pa) as ka, zipfile.ZipFile(pb) as kb:
                for n in ka.namelist():
                    if ka.read(n) != kb.read(n):
                        print("member bytes differ", f, n); bad += 1
        else:
            if open(pa, "rb").read() != open(pb, "rb").read():
                print("DIFF bytes", f); bad += 1
    print(f"{len(fa)} files compared, {bad} differences")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
