"""fp16 and int8 variants of an exported fp32 model (:func:`make_variant`, used by :mod:`serving.export`), and the
int8-static recipe the export writes and :mod:`serving.engine` serves on the CPU by default (docs/bench/int8.md)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx

from serving.engine import INPUT_NAME

__all__ = ["INT8_STATIC_RECIPE", "make_variant"]

log = logging.getLogger(__name__)

# int8-static recipe (docs/bench/int8.md): U8 activations let ONNX Runtime fuse every Conv (with S8 ones the convs
# reading a shared DequantizeLinear stay float: ~1x fp32); reduce_range avoids AVX2's u8 x s8 int16 saturation.
INT8_STATIC_RECIPE: dict[str, str | bool] = {"format": "QDQ", "activation": "U8", "weight": "S8",
                                              "per_channel": True, "reduce_range": True}


def make_variant(fp32_path: Path, fp32_proto: onnx.ModelProto, precision: str, tmp: Path,
                 calib: np.ndarray) -> onnx.ModelProto:
    """Derive an fp16 (onnxruntime.transformers.float16) or int8 (onnxruntime.quantization) model from the fp32
    file ``fp32_path`` (its ``fp32_proto``), written to ``tmp``; ``calib`` are preprocessed calibration images for
    int8-static (quantized with :data:`INT8_STATIC_RECIPE`)."""
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        return convert_float_to_float16(fp32_proto, keep_io_types=True)
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        """Feeds the preprocessed calibration images, 4 at a time."""

        def __init__(self) -> None:
            self._it = iter([{INPUT_NAME: calib[i:i + 4]} for i in range(0, len(calib), 4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    from onnxruntime.quantization.shape_inference import quant_pre_process

    root = logging.getLogger()
    level = root.level
    pre = tmp.with_name(tmp.name + ".pre.onnx")
    try:
        # onnxruntime.quantization logs advice through the root logger; keep the CLI output clean
        root.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = fp32_path
            # symbolic shape inference fails on this graph (Expand); the ORT-optimisation part still runs
            for skip_symbolic in (False, True):
                try:
                    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=skip_symbolic)
                    source = pre
                    break
                except Exception as exc:  # optional optimisation step; quantize the plain model otherwise
                    log.info("quantization pre-processing (skip_symbolic_shape=%s) failed: %s", skip_symbolic, exc)
            if precision == "int8-dynamic":
                quantize_dynamic(source, tmp, weight_type=QuantType.QInt8)
            else:
                r = INT8_STATIC_RECIPE
                act, wt = (QuantType.QUInt8 if r[k] == "U8" else QuantType.QInt8 for k in ("activation", "weight"))
                quantize_static(source, tmp, Reader(), quant_format=getattr(QuantFormat, str(r["format"])),
                                per_channel=bool(r["per_channel"]), reduce_range=bool(r["reduce_range"]),
                                activation_type=act, weight_type=wt)
    finally:
        root.setLevel(level)
        pre.unlink(missing_ok=True)
    return onnx.load(str(tmp))
