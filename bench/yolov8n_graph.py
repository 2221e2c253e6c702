"""A detector graph with YOLOv8n's architecture and export layout, for measuring what an ONNX
detector of that size costs on this CPU.

No trained detector weights can reach these machines, but a network's cost does not depend on
its weights: this rebuilds YOLOv8n layer by layer (ultralytics' ``yolov8n.yaml``: depth 0.33,
width 0.25, C2f blocks, SPPF, the decoupled head with distribution focal loss boxes; 3.15 M
parameters for 80 classes) with random weights, and exports it as ``yolo export format=onnx``
would: input ``images [1, 3, 640, 640]``, output ``output0 [1, 84, 8400]``. Its boxes mean
nothing. As in ultralytics' own initialisation, the class scores start near 0.0003, so random
weights produce few candidates and NMS costs what it costs on a quiet scene.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

CLASSES = 80
REG_MAX = 16
STRIDES = (8, 16, 32)


class Conv(nn.Module):
    """Convolution, batch norm, SiLU (ultralytics' ``Conv``)."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1, self.cv2 = Conv(c, c, 3), Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    def __init__(self, c_in: int, c_out: int, n: int, shortcut: bool) -> None:
        super().__init__()
        self.c = c_out // 2
        self.cv1 = Conv(c_in, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c_out, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1, self.cv2 = Conv(c_in, hidden, 1), Conv(hidden * 4, c_out, 1)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class Detect(nn.Module):
    """Boxes as distributions over 16 distances per side (DFL), decoded to centre and size in
    input pixels; class scores through a sigmoid: ``[1, 4 + classes, anchors]``."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        c2, c3 = max(16, channels[0] // 4, REG_MAX * 4), max(channels[0], min(CLASSES, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * REG_MAX, 1))
            for c in channels
        )
        self.cv3 = nn.ModuleList(
            nn.Sequential(Conv(c, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, CLASSES, 1))
            for c in channels
        )
        for box, cls, stride in zip(self.cv2, self.cv3, STRIDES, strict=True):
            box[-1].bias.data[:] = 1.0
            cls[-1].bias.data[:] = math.log(5 / CLASSES / (640 / stride) ** 2)
        self.register_buffer("bins", torch.arange(REG_MAX, dtype=torch.float32))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        boxes, scores, anchors, strides = [], [], [], []
        for x, box, cls, stride in zip(features, self.cv2, self.cv3, STRIDES, strict=True):
            h, w = x.shape[2:]
            boxes.append(box(x).flatten(2))
            scores.append(cls(x).flatten(2))
            ys, xs = torch.meshgrid(
                torch.arange(h, dtype=torch.float32) + 0.5,
                torch.arange(w, dtype=torch.float32) + 0.5,
                indexing="ij",
            )
            anchors.append(torch.stack((xs.flatten(), ys.flatten())))
            strides.append(torch.full((1, h * w), float(stride)))
        raw = torch.cat(boxes, 2)
        n = raw.shape[2]
        dist = (raw.view(1, 4, REG_MAX, n).softmax(2) * self.bins.view(1, 1, -1, 1)).sum(2)
        anchor, stride = torch.cat(anchors, 1)[None], torch.cat(strides, 1)[None]
        lt, rb = dist[:, :2], dist[:, 2:]
        centre, size = anchor + (rb - lt) / 2, lt + rb
        return torch.cat((torch.cat((centre, size), 1) * stride, torch.cat(scores, 2).sigmoid()), 1)


class YOLOv8n(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.ModuleList(
            [
                Conv(3, 16, 3, 2),
                Conv(16, 32, 3, 2),
                C2f(32, 32, 1, True),
                Conv(32, 64, 3, 2),
                C2f(64, 64, 2, True),  # P3
                Conv(64, 128, 3, 2),
                C2f(128, 128, 2, True),  # P4
                Conv(128, 256, 3, 2),
                C2f(256, 256, 1, True),
                SPPF(256, 256),  # P5
            ]
        )
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.top_down4 = C2f(384, 128, 1, False)
        self.top_down3 = C2f(192, 64, 1, False)
        self.down3, self.bottom_up4 = Conv(64, 64, 3, 2), C2f(192, 128, 1, False)
        self.down4, self.bottom_up5 = Conv(128, 128, 3, 2), C2f(384, 256, 1, False)
        self.detect = Detect((64, 128, 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = {}
        for n, layer in enumerate(self.backbone):
            x = layer(x)
            kept[n] = x
        p3, p4, p5 = kept[4], kept[6], kept[9]
        t4 = self.top_down4(torch.cat((self.up(p5), p4), 1))
        out3 = self.top_down3(torch.cat((self.up(t4), p3), 1))
        out4 = self.bottom_up4(torch.cat((self.down3(out3), t4), 1))
        out5 = self.bottom_up5(torch.cat((self.down4(out4), p5), 1))
        return self.detect([out3, out4, out5])


def parameter_count() -> int:
    return sum(p.numel() for p in YOLOv8n().parameters())


def export_yolov8n(path: Path, size: int = 640, seed: int = 0) -> Path:
    """Write the graph to ``path`` (opset 17, batch norm folded by ONNX Runtime when loaded)."""
    torch.manual_seed(seed)
    model = YOLOv8n().eval()
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            str(path),
            input_names=["images"],
            output_names=["output0"],
            opset_version=17,
            dynamo=False,
        )
    return path
