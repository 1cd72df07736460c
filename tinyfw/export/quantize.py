"""Dynamic int8 quantization of an ONNX classifier with ONNX Runtime's ``quantize_dynamic``:
int8 weights for every linear layer (``MatMul``; the pooler's and head's ``Gemm`` become
``MatMulInteger`` too) and the embedding tables (``Gather``), activations quantized on the fly. ONNX's own ``Attention`` op (opset 23) is left in fp32:
ORT's quantizer would map it to its contrib ``QAttention``, which does not accept it."""

from __future__ import annotations

from pathlib import Path

OPS = ("MatMul", "Gather")


def quantize_int8(src: Path, dst: Path, per_channel: bool = False) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from tinyfw.export.onnx import quiet

    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with quiet():  # per-tensor INFO lines and a pre-processing hint (its shape inference fails on these graphs)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=list(OPS))
    return Path(dst)
