"""PyTorch counterparts of bench_apiary's train, score and decode modes.

Run by tests/bench/bench_vs_torch.sh with the interpreter of .venv-bench:

    bench_torch.py MODE --data FILE [--threads N] [--warmup N] [--steps N]
                   [--device cpu|cuda] [--compile] [--channels-last]

FILE is written by `bench_apiary dump`: the network of the config, and the
same decoded images and labels apiary trains on. The network, loss, optimizer
and augmentation mirror apiary's (pipeline/nn/net.h, kernels/cpu/preprocess.h).
Each result is one JSON object on one line of standard output, with the
network's parameter count so that bench_compare.py can check both tools ran
the same network.
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


def make_net(spec, labels):
    """The network of the spec line of a dump: stem, stages of [channels, blocks], head."""
    stem = spec["stem_channels"]
    kernel = spec["stem_kernel"]
    layers = [
        nn.Conv2d(3, stem, kernel, spec["stem_stride"], kernel // 2, bias=False),
        nn.BatchNorm2d(stem),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    channels = stem
    for stage, (out_channels, blocks) in enumerate(spec["stages"]):
        for index in range(blocks):
            layers.append(BasicBlock(channels, out_channels, 2 if stage > 0 and index == 0 else 1))
            channels = out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(spec["dropout"]),
               nn.Linear(channels, labels)]
    return nn.Sequential(*layers)


def parameter_count(net):
    return sum(p.numel() for p in net.parameters())


def read_dump(path):
    """The network spec, images as a uint8 [N, H, W, 3] tensor, labels as int8 [N, L], file names."""
    with open(path, "rb") as file:
        header = file.readline().split()
        if header[0] != b"apiary-bench-images":
            sys.exit(f"{path}: not a bench_apiary dump")
        count, height, width, labels = (int(value) for value in header[1:])
        spec = json.loads(file.readline())
        pixels = np.frombuffer(file.read(count * height * width * 3), np.uint8)
        targets = np.frombuffer(file.read(count * labels), np.int8)
        names = file.read().decode().splitlines()
    images = torch.from_numpy(pixels.copy()).view(count, height, width, 3)
    return spec, images, torch.from_numpy(targets.copy()).view(count, labels), names


def preprocess(raw, generator, augment, channels_last):
    """uint8 NHWC batch to normalised float NCHW, with apiary's augmentation."""
    x = raw.permute(0, 3, 1, 2).float().div_(255.0)
    if augment:
        n = x.shape[0]
        flip_h = torch.rand(n, generator=generator) < 0.5
        flip_v = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip_h[:, None, None, None], x.flip(3), x)
        x = torch.where(flip_v[:, None, None, None], x.flip(2), x)
        brightness = (torch.rand(n, generator=generator) * 2 - 1) * 0.1
        contrast = 1 + (torch.rand(n, generator=generator) * 2 - 1) * 0.1
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
        x = x.clamp_(0, 1)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def make_optimizer(net):
    """AdamW with weight decay on convolution and dense weights only, as apiary."""
    decay = [p for p in net.parameters() if p.dim() > 1]
    no_decay = [p for p in net.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=0.003, betas=(0.9, 0.999), eps=1e-8)


def common(args, bench, batch, images, net=None):
    return {
        "parameters": parameter_count(net) if net is not None else None,
        "bench": bench,
        "tool": "torch" + ("-compile" if args.compile else ""),
        "device": args.device,
        "threads": args.threads,
        "batch": batch,
        "width": images.shape[2],
        "height": images.shape[1],
        "torch": torch.__version__,
        "channels_last": args.channels_last,
    }


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def run_train(args):
    spec, images, targets, _ = read_dump(args.data)
    batch = args.batch or spec["batch"]
    net = make_net(spec, targets.shape[1]).to(args.device)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    model = torch.compile(net) if args.compile else net
    generator = torch.Generator().manual_seed(42)
    count = images.shape[0]

    def step(index):
        first = index * batch % (count - batch + 1)
        x = preprocess(images[first : first + batch], generator, True, args.channels_last)
        y = targets[first : first + batch]
        x, y = x.to(args.device, non_blocking=True), y.to(args.device, non_blocking=True)
        known = (y >= 0).float()
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = (loss_fn(logits, y.clamp(min=0).float()) * known).sum() / known.sum().clamp(min=1)
        loss.backward()
        optimizer.step()

    net.train()
    for index in range(args.warmup):
        step(index)
    sync(args.device)
    start = time.perf_counter()
    for index in range(args.steps):
        step(args.warmup + index)
    sync(args.device)
    seconds = time.perf_counter() - start
    result = common(args, "train", batch, images, net)
    result.update(steps=args.steps, seconds=seconds, images_per_second=args.steps * batch / seconds)
    print(json.dumps(result), flush=True)


def run_score(args):
    spec, images, targets, _ = read_dump(args.data)
    batch = args.batch or spec["batch"]
    net = make_net(spec, targets.shape[1]).to(args.device).eval()
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = torch.compile(net) if args.compile else net
    x = preprocess(images[:batch], None, False, args.channels_last).to(args.device)
    with torch.inference_mode():
        for _ in range(args.warmup):
            model(x)
        sync(args.device)
        start = time.perf_counter()
        for _ in range(args.steps):
            model(x)
        sync(args.device)
        seconds = time.perf_counter() - start
    result = common(args, "score", batch, images, net)
    result.update(steps=args.steps, seconds=seconds, images_per_second=args.steps * batch / seconds)
    print(json.dumps(result), flush=True)


def letterbox_pil(path, width, height):
    """Decode with Pillow and resize into a black width x height canvas, keeping the aspect."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = min(width / image.width, height / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resized = image.resize(size, Image.BILINEAR)
        canvas = Image.new("RGB", (width, height))
        canvas.paste(resized, ((width - size[0]) // 2, (height - size[1]) // 2))
        return np.asarray(canvas)


def letterbox_torchvision(path, width, height):
    """Decode with torchvision.io and resize with antialiasing into a black canvas."""
    import torchvision.io
    import torchvision.transforms.v2.functional as F

    image = torchvision.io.decode_image(torchvision.io.read_file(path), torchvision.io.ImageReadMode.RGB)
    h, w = image.shape[1:]
    scale = min(width / w, height / h)
    size = [max(1, round(h * scale)), max(1, round(w * scale))]
    resized = F.resize(image, size, antialias=True)
    canvas = torch.zeros(3, height, width, dtype=torch.uint8)
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    canvas[:, top : top + size[0], left : left + size[1]] = resized
    return canvas


def run_decode(args):
    _, images, _, names = read_dump(args.data)
    height, width = images.shape[1:3]
    paths = []
    for name in names:
        path = os.path.join(args.image_root, name)
        paths.append(path if os.path.exists(path) else os.path.join(args.image_root, "images", name))
    torch.set_num_threads(1)  # one decoder thread per worker, like apiary's OpenMP loop
    for decoder, function in (("pillow", letterbox_pil), ("torchvision", letterbox_torchvision)):
        with ThreadPoolExecutor(args.threads) as pool:
            start = time.perf_counter()
            for _ in range(args.steps):
                list(pool.map(lambda path: function(path, width, height), paths))
            seconds = time.perf_counter() - start
        result = common(args, "decode", 0, images)
        result.update(tool=decoder, images=len(paths), passes=args.steps, seconds=seconds,
                      images_per_second=len(paths) * args.steps / seconds)
        print(json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["train", "score", "decode", "check"])
    parser.add_argument("--data", help="images file written by bench_apiary dump")
    parser.add_argument("--image-root", help="dataset folder, for decode")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=0, help="default: the config's batch size")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compile", action="store_true", help="run the model through torch.compile")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    if args.mode == "check":
        available = args.device == "cpu" or torch.cuda.is_available()
        print(json.dumps({"torch": torch.__version__, "device": args.device, "available": available}))
        sys.exit(0 if available else 77)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(77)
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    {"train": run_train, "score": run_score, "decode": run_decode}[args.mode](args)


if __name__ == "__main__":
    main()
