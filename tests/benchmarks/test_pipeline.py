"""Micro-benchmarks: getting 28 px MNIST-shaped images to 224 px, two ways, per image.

- ``harness``: the adaptbench way. The images already sit on the device as uint8; one call of
  ``bench.data.batches`` gathers and normalizes a batch, and the ``resize224`` strategy's input
  adapter (the part of the model in front of the backbone) resizes it on the device.
- ``naive``: the pipeline of the original write-up's era: a ``torchvision.datasets.MNIST``-style
  dataset of PIL images, ``transforms.Compose([Resize(224), Grayscale(3), ToTensor()])`` applied
  per sample, batched by a default ``DataLoader`` (``num_workers=0``), then copied to the device.

Both rounds turn the same number of synthetic uint8 images into one materialised float batch
``(n, 3, 224, 224)`` on the device, in the same memory layout: each benchmark runs once per
layout (``contiguous``, ``channels_last``; the id and ``extra_info["memory_format"]`` name it),
and both sides end with ``.contiguous(memory_format=...)`` (the adapter's channel repeat is a
view until then, so the harness side pays for writing all three channels, as a convolution
would make it). Both are timed with the same window (one call per round), rounds, warm-up and
``cudnn.benchmark`` (pinned by the conftest). So the ratio of their times is the ratio per
image; ``extra_info`` has ``us_per_img`` and ``img_s``. Synthetic pixels, not MNIST: resize and
conversion cost do not depend on the pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.data import DATASETS, batches

MNIST = DATASETS["mnist"]
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
layouts = pytest.mark.parametrize("layout", list(MEMORY_FORMATS))


def _group(micro, device, layout: str) -> str:
    return (f"input pipeline: {micro.pipeline_images} images 28 px -> 224 px, "
            f"{layout} float batch on {device.type}")


def _check(out: torch.Tensor, n: int, device, layout: str) -> None:
    assert out.shape == (n, 3, 224, 224) and out.device.type == device.type
    assert out.is_contiguous(memory_format=MEMORY_FORMATS[layout])


def _uint8_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic MNIST-shaped images (n, 1, 28, 28) uint8 and int64 labels, on the CPU."""
    gen = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8),
            torch.randint(0, 10, (n,), generator=gen))


def _input_adapter(spec: str, device: torch.device) -> nn.Module:
    """The input adaptation of ``spec``: ``AdaptedModel.adapt``, what runs before the backbone."""
    from strategies import build

    return build("resnet18", spec, num_classes=10, device=device).adapt.eval()


@layouts
def test_harness_resize(benchmark, micro, device, measure, layout):
    """uint8 on device -> gather + normalize (bench.data.batches) -> in-module resize224."""
    benchmark.group = _group(micro, device, layout)
    fmt = MEMORY_FORMATS[layout]
    n = micro.pipeline_images
    x_cpu, y_cpu = _uint8_images(n)
    x, y = x_cpu.to(device), y_cpu.to(device)
    adapter = _input_adapter("resize224", device)

    def harness() -> torch.Tensor:
        xb, _ = next(batches(x, y, n, mean=MNIST.mean, std=MNIST.std, shuffle=True))
        with torch.no_grad():
            return adapter(xb).contiguous(memory_format=fmt)

    out = measure.run(benchmark, harness, rounds=micro.pipeline_rounds,
                      warmup=micro.pipeline_warmup)

    _check(out, n, device, layout)
    measure.record(benchmark, images_per_round=n, output_shape=list(out.shape),
                   memory_format=layout, memory_of=harness, resident=[x, y])


class _PILDigits(Dataset):
    """What ``torchvision.datasets.MNIST`` does per item: uint8 array -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


@layouts
def test_naive_dataloader(benchmark, micro, device, measure, layout):
    """PIL per sample: Resize(224) + Grayscale(3) + ToTensor, DataLoader, then .to(device)."""
    benchmark.group = _group(micro, device, layout)
    fmt = MEMORY_FORMATS[layout]
    n = micro.pipeline_images
    x_cpu, y_cpu = _uint8_images(n)
    transform = transforms.Compose(
        [transforms.Resize(224), transforms.Grayscale(3), transforms.ToTensor()])
    loader = DataLoader(_PILDigits(x_cpu[:, 0].numpy(), y_cpu.numpy(), transform),
                        batch_size=n, shuffle=True)

    def naive() -> torch.Tensor:
        for xb, _ in loader:  # one batch: the whole set
            return xb.to(device).contiguous(memory_format=fmt)
        raise AssertionError("empty DataLoader")

    out = measure.run(benchmark, naive, rounds=micro.pipeline_rounds,
                      warmup=micro.pipeline_warmup)

    _check(out, n, device, layout)
    measure.record(benchmark, images_per_round=n, output_shape=list(out.shape),
                   memory_format=layout, memory_of=naive, resident=[x_cpu, y_cpu])
