"""Convolutions kept in fp32 under bf16 autocast on the CPU: those with few output positions, whose
bf16 backward pass makes oneDNN's threads wait for each other in a spin loop.

oneDNN computes the weight gradient of a bf16 convolution with few output positions per image
(seed 002's third convolution: 4×4) by splitting the batch between the threads and adding their
parts after a barrier that it compiles itself and that spins (``jit_t``, the ``simple_barrier``
of oneDNN; seen with ``perf`` and ``ONEDNN_JIT_PROFILE=2``). No OpenMP setting reaches it. On a
machine whose cores other processes also want, the thread that arrives first spins away the time
its descheduled partner needs: with two threads on two busy cores that one layer took most of a
training step's CPU time, 85–93% (keras_cifar_cnn, batch 256, load 14: 2,242–6,334 CPU-µs per image,
56–139 images/s; with it in fp32, 316–431 CPU-µs and 726–1,068 images/s; BENCHMARKS.md). In
fp32 oneDNN takes another path without the barrier. Such a layer has little arithmetic (16
positions), so fp32 costs little: 5% more CPU per image at one thread.

The swap changes the class of the module only (a subclass of `nn.Conv2d`), so parameter names,
``state_dict`` keys and ``isinstance`` checks stay as they were.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MAX_POSITIONS = 16  # output height × width at or below which a bf16 convolution runs in fp32


class Fp32Conv2d(nn.Conv2d):
    """A 2-D convolution that runs in fp32 inside bf16 autocast (its input is cast up)."""

    def forward(self, input: Tensor) -> Tensor:
        if not torch.is_autocast_enabled(input.device.type):
            return super().forward(input)
        with torch.autocast(input.device.type, enabled=False):
            return super().forward(input.float())


def small_convolutions(model: nn.Module, input_shape: tuple[int, int, int]) -> list[str]:
    """Names of the `nn.Conv2d` layers of ``model`` whose output has at most MAX_POSITIONS
    positions for an input of ``input_shape`` (C, H, W), found with one forward pass of two
    images (the model's mode is kept)."""
    sizes: dict[str, int] = {}
    hooks = [module.register_forward_hook(
        lambda module, args, output, name=name: sizes.__setitem__(name, output.shape[-2] * output.shape[-1]))
        for name, module in model.named_modules() if type(module) in (nn.Conv2d, Fp32Conv2d)]
    training = model.training
    try:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, *input_shape, device=device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return [name for name, positions in sizes.items() if positions <= MAX_POSITIONS]


def keep_small_convolutions_fp32(model: nn.Module, input_shape: tuple[int, int, int]) -> list[str]:
    """Make the small convolutions of ``model`` (see `small_convolutions`) run in fp32 under bf16
    autocast, in place; returns their names. For CPU training in bf16 only: elsewhere the spin
    barrier is not in the way."""
    names = small_convolutions(model, input_shape)
    modules = dict(model.named_modules())
    for name in names:
        if type(modules[name]) is nn.Conv2d:
            modules[name].__class__ = Fp32Conv2d
    return names
