"""A seeded untrained checkpoint whose classifier is decisive: a few boxes per image far above 0.5, the rest far below.

    .venv/bin/python scripts/decisive_checkpoint.py MODEL OUT.pth [--seed 1]

Trained weights cannot be downloaded here, and untrained ones give every class the same score (1/91): no box reaches
the 0.5 threshold, so runtime agreement would be measured on nothing. This writes the untrained model (seeded as
DetLens builds it) with its last classification layer drawn large (weights N(0, 2), biases N(0, 2) - 4): scores are
then spread out, boxes depend on the image, and eager, ONNX Runtime and OpenVINO have boxes to agree on. For SSD and
SSDLite (the classification head's last convolutions). Two-stage R-CNNs need none: untrained, Faster R-CNN already
puts boxes above 0.5 (469 on the gallery), and a classifier drawn this large saturates their scores, so the top-100
cut among ties picks boxes at random and the runtimes cannot agree. Use the file with `python scripts/bench_runtimes.py
--runtimes ... --weights OUT.pth` or `detect --weights OUT.pth`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.inference.models import get_model  # noqa: E402
from core.inference.weights import build_model, parse_weights  # noqa: E402


def decisive_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers whose outputs are the class logits."""
    head = getattr(module, "head", None)
    if head is not None and hasattr(head, "classification_head"):  # SSD, SSDLite
        return [
            seq[-1] if isinstance(seq, torch.nn.Sequential) else seq for seq in head.classification_head.module_list
        ]
    raise SystemExit(f"{type(module).__name__}: only SSD/SSDLite (untrained R-CNNs already have boxes above 0.5)")


def decisive_state_dict(model: str, seed: int = 1) -> dict[str, torch.Tensor]:
    module = build_model(get_model(model), parse_weights("untrained")).module
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in decisive_layers(module):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 2.0)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 2.0 - 4.0)
    return module.state_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    torch.save(decisive_state_dict(args.model, args.seed), args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
