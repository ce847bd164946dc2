"""An SSDLite320 checkpoint whose class scores look like a trained model's: background first, few candidates.

    .venv/bin/python scripts/ssdlite_score_checkpoint.py OUT.pth [--noise 1.0] [--background 10]

Untrained SSDLite gives every class the same score (1/91): every (anchor, class) passes the 0.001 score floor and
27,000 tied boxes go into the NMS, which is a third of its OpenVINO time. Trained weights cannot be downloaded here, so
this writes the untrained model (seeded) with its classification head's last convolutions replaced: weight 0, the
background logit raised by `--background` and the class logits N(0, `--noise`) per channel. `--noise 0.3` leaves no
box above the floor (the NMS has nothing to do); `--noise 0.8` sends about 2,800 boxes into the NMS, `--noise 1.0`
about 9,700 (the per-class cap is 300). Use the file with `python scripts/bench_runtimes.py --runtimes ... --weights OUT.pth`.
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

MODEL = "ssdlite320_mobilenet_v3_large"


def score_checkpoint(background: float, noise: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict described above."""
    torch.manual_seed(seed)
    module = build_model(get_model(MODEL), parse_weights("untrained")).module.eval()
    gen = torch.Generator().manual_seed(seed + 1)
    n_classes = len(get_model(MODEL).categories)
    with torch.no_grad():
        for seq in module.head.classification_head.module_list:
            conv = seq[-1]
            conv.weight.zero_()
            bias = torch.randn(conv.bias.shape, generator=gen) * noise
            bias.view(-1, n_classes)[:, 0] += background
            conv.bias.copy_(bias)
    return module.state_dict()


def candidates(state: dict[str, torch.Tensor]) -> int:
    """Boxes that go into the NMS on a random 320x320 image: per class, the scores above the model's score floor, at
    most its `topk_candidates`."""
    module = build_model(get_model(MODEL), parse_weights("untrained")).module.eval()
    module.load_state_dict(state)
    with torch.no_grad():
        images, _ = module.transform([torch.rand(3, 320, 320)])
        head = module.head(list(module.backbone(images.tensors).values()))
        scores = torch.softmax(head["cls_logits"][0], -1)[:, 1:]
    per_class = (scores > module.score_thresh).sum(dim=0).clamp(max=module.topk_candidates)
    return int(per_class.sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--background", type=float, default=10.0)
    args = ap.parse_args()
    state = score_checkpoint(args.background, args.noise)
    torch.save(state, args.out)
    print(f"{args.out}: {candidates(state)} boxes into the NMS (untrained weights: 27,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
