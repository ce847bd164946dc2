"""Series names: how a model runs (a runtime and its precision) and the name its records carry in the `model`
column. Torch-free, so the dashboard and the records can name series without loading a runtime."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import PRECISIONS, RUNTIME_EAGER, RUNTIMES, SERIES_SEP


class RuntimeRefusedError(ValueError):
    """A runtime, precision or device combination that cannot run here: one clear line, before anything runs."""


@dataclass(frozen=True)
class Variant:
    """How a model runs: a runtime and, when given, its own precision (None: the run's precision)."""

    runtime: str = RUNTIME_EAGER
    precision: str | None = None

    @property
    def token(self) -> str:
        """As written on the command line: `openvino`, `openvino-bf16`."""
        return self.runtime + (f"-{self.precision}" if self.precision else "")

    def precision_for(self, run_precision: str) -> str:
        return self.precision or run_precision


def parse_variant(token: str) -> Variant:
    """`eager`, `compile`, `onnxruntime`, `openvino`, optionally with `-fp32|-fp16|-bf16`."""
    text = token.strip().lower()
    runtime, _, precision = text.partition("-")
    if runtime not in RUNTIMES:
        raise RuntimeRefusedError(f"unknown runtime '{token}': choose one of {', '.join(RUNTIMES)}")
    if precision and precision not in PRECISIONS:
        raise RuntimeRefusedError(f"unknown precision in '{token}': choose one of {', '.join(PRECISIONS)}")
    return Variant(runtime, precision or None)


def parse_variants(text: str | list[str] | tuple[str, ...]) -> list[Variant]:
    """A comma-separated list (or a list) of variant tokens, duplicates dropped, order kept."""
    tokens = text.split(",") if isinstance(text, str) else list(text)
    found = [parse_variant(t) for t in tokens if t.strip()]
    return list(dict.fromkeys(found)) or [Variant()]


def series_name(model: str, runtime: str = RUNTIME_EAGER, precision: str = "fp32", run_precision: str = "fp32") -> str:
    """The series of (model, runtime, precision): `model` for eager at the run's precision, else `model@runtime`,
    with `-precision` when it is not fp32 (`ssdlite320_mobilenet_v3_large@openvino-bf16`)."""
    if runtime == RUNTIME_EAGER and precision == run_precision:
        return model
    return f"{model}{SERIES_SEP}{runtime}" + ("" if precision == "fp32" else f"-{precision}")


def split_series(series: str) -> tuple[str, str, str | None]:
    """(model, runtime, precision or None when the name does not say) of a series name; plain names are eager."""
    model, sep, rest = str(series).partition(SERIES_SEP)
    if not sep:
        return model, RUNTIME_EAGER, None
    runtime, _, precision = rest.partition("-")
    return model, runtime, precision or "fp32"


def base_model(series: str) -> str:
    """The registry name of a series (`fasterrcnn_resnet50_fpn@openvino` -> `fasterrcnn_resnet50_fpn`)."""
    return split_series(series)[0]
