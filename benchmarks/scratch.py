"""The NumPy-only book CNN: accuracy on real MNIST, and its layers' speed against PyTorch.

    python benchmarks/scratch.py                       # train 2 epochs, then time the layers
    python benchmarks/scratch.py --epochs 1 --threads 2
    python benchmarks/scratch.py --skip-train          # only the speed comparison

Training uses cnnlab.scratch alone (float32, SGD with momentum, batch 64); torch is imported
only afterwards, for the timing comparison. Target: ≥ 97% test accuracy, and the conv layers'
forward+backward within 4× of PyTorch on the CPU. Both libraries get the same thread count.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads")
    parser.add_argument("--skip-train", action="store_true")
    return parser.parse_args()


def read_idx(path: Path):
    """An IDX file (gzip) as a uint8 array: magic, dims, then the data (MNIST's format)."""
    import numpy as np

    if not path.is_file():
        sys.exit(f"error: {path} is missing (expected MNIST's IDX files under --data-dir)")
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(root: Path):
    raw = root / "MNIST" / "raw"
    x_train = read_idx(raw / "train-images-idx3-ubyte.gz")[:, None]
    y_train = read_idx(raw / "train-labels-idx1-ubyte.gz").astype("int64")
    x_test = read_idx(raw / "t10k-images-idx3-ubyte.gz")[:, None]
    y_test = read_idx(raw / "t10k-labels-idx1-ubyte.gz").astype("int64")
    return x_train, y_train, x_test, y_test


def train(args: argparse.Namespace) -> float:
    from cnnlab import scratch as sc

    x_train, y_train, x_test, y_test = load_mnist(args.data_dir)
    net = sc.book_cnn(rng=args.seed)
    print(
        f"book_cnn (NumPy): {net.num_parameters():,} parameters; MNIST {len(x_train):,} train, "
        f"{len(x_test):,} test; SGD lr {args.lr} momentum {args.momentum}, batch {args.batch_size}"
    )

    def report(stats: sc.EpochStats) -> None:
        print(
            f"  epoch {stats.epoch}: train loss {stats.train_loss:.4f}, train acc "
            f"{stats.train_acc:.4f}, test acc {stats.val_acc:.4f}, {stats.seconds:.1f} s"
        )

    start = time.perf_counter()
    history = sc.fit(
        net,
        x_train,
        y_train,
        epochs=args.epochs,
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        seed=args.seed,
        x_val=x_test,
        y_val=y_test,
        on_epoch=report,
    )
    wall = time.perf_counter() - start
    accuracy = history[-1].val_acc
    images_per_s = args.epochs * len(x_train) / sum(s.seconds for s in history)
    print(
        f"test accuracy {accuracy:.4f} (target ≥ 0.97) in {wall:.1f} s wall "
        f"({images_per_s:,.0f} train images/s including evaluation)"
    )
    return accuracy


def best_time(fn, repeats: int = 7, number: int = 10) -> float:
    """Best of ``repeats`` averages over ``number`` calls (least disturbed by other load)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def compare_speed(batch: int = 64) -> list[tuple[str, float, float]]:
    """Forward+backward of each book-CNN layer, NumPy vs PyTorch, float32, batch 64."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from cnnlab import scratch as sc

    rng = np.random.default_rng(0)

    def arr(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    def scratch_case(op, inputs, grad_shape, **kw):
        grad = arr(*grad_shape)

        def run():
            _, backward = op.vjp(*inputs, **kw)
            backward(grad)

        return run

    def torch_case(fn, inputs, needs_grad, grad_shape):
        tensors = [torch.tensor(a, requires_grad=g) for a, g in zip(inputs, needs_grad, strict=True)]
        grad = torch.tensor(arr(*grad_shape))

        def run():
            fn(*tensors).backward(grad)
            for t in tensors:
                t.grad = None

        return run

    x1, w1, b1 = arr(batch, 1, 28, 28), arr(10, 1, 5, 5), arr(10)
    x2, w2, b2 = arr(batch, 10, 12, 12), arr(20, 10, 5, 5), arr(20)
    p1, p2 = arr(batch, 10, 24, 24), arr(batch, 20, 8, 8)
    f1, fw1, fb1 = arr(batch, 320), arr(50, 320), arr(50)

    g1 = arr(batch, 10, 24, 24)

    def conv1_np():
        _, backward = sc.conv2d.vjp(x1, w1, b1)
        backward(g1, input_grad=False)  # the image needs no gradient (torch skips it too)

    cases = [
        (
            "conv 1→10 k5, 28×28 (no input grad)",
            conv1_np,
            torch_case(F.conv2d, [x1, w1, b1], [False, True, True], (batch, 10, 24, 24)),
        ),
        (
            "conv 10→20 k5, 12×12",
            scratch_case(sc.conv2d, [x2, w2, b2], (batch, 20, 8, 8)),
            torch_case(F.conv2d, [x2, w2, b2], [True, True, True], (batch, 20, 8, 8)),
        ),
        (
            "max pool 2, 10×24×24",
            scratch_case(sc.max_pool2d, [p1], (batch, 10, 12, 12)),
            torch_case(lambda t: F.max_pool2d(t, 2), [p1], [True], (batch, 10, 12, 12)),
        ),
        (
            "max pool 2, 20×8×8",
            scratch_case(sc.max_pool2d, [p2], (batch, 20, 4, 4)),
            torch_case(lambda t: F.max_pool2d(t, 2), [p2], [True], (batch, 20, 4, 4)),
        ),
        (
            "linear 320→50",
            scratch_case(sc.linear, [f1, fw1, fb1], (batch, 50)),
            torch_case(F.linear, [f1, fw1, fb1], [True, True, True], (batch, 50)),
        ),
    ]
    results = []
    for name, numpy_fn, torch_fn in cases:
        results.append((name, best_time(numpy_fn), best_time(torch_fn)))

    # One whole training step of the book CNN (forward, loss, backward, SGD update).
    images = rng.random((batch, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, batch)
    net = sc.book_cnn(0)
    optimizer = sc.SGD(net.parameters(), lr=0.01, momentum=0.5)

    def numpy_step():
        _, backward = sc.softmax_cross_entropy.vjp(net(images), labels)
        optimizer.zero_grad()
        net.backward(backward(1.0))
        optimizer.step()

    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 10, 5),
        torch.nn.MaxPool2d(2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(10, 20, 5),
        torch.nn.Dropout2d(0.5),
        torch.nn.MaxPool2d(2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(320, 50),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(50, 10),
    )
    torch_opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    t_images, t_labels = torch.tensor(images), torch.tensor(labels)

    def torch_step():
        loss = F.cross_entropy(model(t_images), t_labels)
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()

    results.append(("book CNN training step", best_time(numpy_step), best_time(torch_step)))
    return results


def main() -> None:
    args = parse_args()
    # Thread counts must be set before NumPy (OpenBLAS) starts its thread pool.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.threads} thread(s); NumPy {np.__version__}; load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    accuracy = None if args.skip_train else train(args)
    if "torch" in sys.modules:
        sys.exit("error: training imported torch; cnnlab.scratch must stay NumPy-only")

    import torch

    torch.set_num_threads(args.threads)
    print(f"\nforward+backward, float32, batch 64 (best of 7×10 runs), torch {torch.__version__}:")
    print(f"  {'layer':38s} {'NumPy ms':>9s} {'torch ms':>9s} {'ratio':>6s}")
    conv_ratios = []
    for name, numpy_s, torch_s in compare_speed():
        ratio = numpy_s / torch_s
        if name.startswith("conv"):
            conv_ratios.append(ratio)
        print(f"  {name:38s} {numpy_s * 1e3:9.3f} {torch_s * 1e3:9.3f} {ratio:5.2f}×")
    print(f"conv layers: worst ratio {max(conv_ratios):.2f}× (target ≤ 4×)")
    if accuracy is not None and accuracy < 0.97:
        sys.exit(f"test accuracy {accuracy:.4f} is below the 0.97 target")


if __name__ == "__main__":
    main()
