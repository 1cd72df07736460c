"""The training precision a stage runs in: ``auto`` resolved against the hardware, in one place.

``auto`` is bf16 where the hardware runs it natively -- a CUDA device with bf16 support, or a
CPU whose oneDNN has bf16 kernels (AVX512-BF16 or AMX: ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``)
-- and fp32 elsewhere; never fp16 (it needs a GPU and a loss scaler, and on a CPU autocast would
silently run fp32). On a CPU without native bf16, bf16 autocast is emulated and several times
*slower* than fp32 (8-26x on an AVX2 EPYC, BENCHMARKS.md), hence fp32 there. An explicit
``bf16`` on such a CPU runs as asked, with a one-line warning.

Cache keys hold the resolved value (:func:`key_value`), so ``auto`` keys like the precision it
chose: on a machine with native bf16, ``auto`` and ``bf16`` share their cached artefacts.
Each choice is logged once per process and kept (:func:`choices`) for result.json.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

from tinyfw.choices import Precision, values

log = logging.getLogger("tinyfw.precision")

AUTO = Precision.auto.value
PRECISIONS = tuple(p for p in values(Precision) if p != AUTO)  # what `auto` resolves among

_MADE: Dict[str, Dict[str, str]] = {}  # where -> the record of its choice (this process)


@dataclass(frozen=True)
class Choice:
    requested: str  # as configured: auto | fp32 | bf16 | fp16
    resolved: str  # what runs: fp32 | bf16 | fp16
    device: str  # cpu | cuda[:N]
    reason: str  # one sentence: why (auto) or what the hardware says about it (explicit)


def capability(device: str = "cpu") -> Tuple[bool, str]:
    """(native bf16?, what the hardware reports) for ``device`` (``cpu`` or ``cuda[:N]``)."""
    import torch

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "no CUDA device"
        ok = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return ok, f"{name}: bf16 {'supported' if ok else 'not supported'}"
    cap = torch.backends.cpu.get_cpu_capability()
    ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return ok, f"CPU capability {cap}, oneDNN bf16 {'native' if ok else 'not native (emulated)'}"


def _device(device: Optional[str]) -> str:
    if device:
        return str(device)
    from tinyfw import dist

    return dist.device()


def resolve(requested: Any, device: Optional[str] = None, where: str = "") -> Choice:
    """``requested`` (auto | fp32 | bf16 | fp16, an enum or its string) for ``device`` (default:
    where this process trains). Logs the choice once per ``where`` (a config key, e.g.
    ``task_distill.precision``) and records it for :func:`choices`; warns once, in one line,
    when bf16 is asked on a CPU without native bf16."""
    req = str(getattr(requested, "value", requested))
    if req not in PRECISIONS + (AUTO,):
        raise ValueError(f"{where or 'precision'}={req!r}: use one of {', '.join(values(Precision))}")
    dev = _device(device)
    native, hw = capability(dev)
    if req == AUTO:
        resolved = "bf16" if native else "fp32"
        reason = f"auto: {hw} -> {resolved}"
    else:
        resolved, reason = req, f"as configured ({hw})"
    choice = Choice(req, resolved, dev, reason)
    key = where or "precision"
    if _MADE.get(key) != asdict(choice):
        _MADE[key] = asdict(choice)
        log.info("%s: %s (%s)", key, resolved, reason)
        if resolved == "bf16" and not dev.startswith("cuda") and not native:
            log.warning("%s=bf16 on a CPU without native bf16 (%s): it runs emulated, several times slower "
                        "than fp32; set %s=auto or fp32", key, hw, key)
    return choice


def resolved(requested: Any, device: Optional[str] = None, where: str = "") -> str:
    """The precision ``requested`` runs in (:func:`resolve`'s ``resolved``)."""
    return resolve(requested, device, where).resolved


def key_value(value: Any, device: Optional[str] = None, where: str = "") -> Any:
    """A configured precision as a cache key holds it: ``auto`` as what it resolves to, anything
    else (an explicit precision, or null = "the global one") unchanged."""
    plain = getattr(value, "value", value)
    return resolved(plain, device, where) if plain == AUTO else plain


def choices() -> Dict[str, Dict[str, str]]:
    """Every precision chosen in this process, by config key (for result.json)."""
    return {k: dict(v) for k, v in _MADE.items()}
