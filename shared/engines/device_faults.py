"""Which engine failures a worker survives, and which leave its model untrusted.

A CUDA out-of-memory is raised by the caching allocator before anything is computed: once the
failed call's tensors are let go and the cache is emptied, the next job runs. An illegal memory
access, a device-side assert or an ECC error is sticky: the CUDA context is poisoned for the life
of the process, every later kernel fails (or computes garbage), so the only cure is a new
process (on RunPod, ``refresh_worker``). Engines wrap torch's errors in ours (xtts.py's
``_inference_error``, failover's translation), so the whole cause chain is read, and torch is
looked up only if the process has imported it (a Piper worker never does).
"""

from __future__ import annotations

import gc
import logging
import sys
import traceback
from collections.abc import Iterator
from enum import StrEnum

from shared.errors import DeviceError, EngineOutOfMemory

_log = logging.getLogger(__name__)
# How torch words them (c10/cuda/CUDAException.h, CUDACachingAllocator.cpp). Any other
# "CUDA error:" is sticky too: CUDA keeps the first error of a context for every later call.
_OUT_OF_MEMORY = ("out of memory",)
_STICKY = (
    "cuda error",
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "uncorrectable ecc",
    "cublas_status_execution_failed",
    "cudnn_status_execution_failed",
)


class Fault(StrEnum):
    OUT_OF_MEMORY = "out_of_memory"
    DEVICE = "device"


def classify(error: BaseException) -> Fault | None:
    """The device fault behind ``error`` (None: an ordinary failure of this job only)."""
    chain = list(_causes(error))
    if any(_is_out_of_memory(one) for one in chain):
        return Fault.OUT_OF_MEMORY
    if any(_is_sticky(one) for one in chain):
        return Fault.DEVICE
    return None


def translate(error: BaseException) -> BaseException:
    """``error`` as the job should see it: an out-of-memory freed and told as
    ``EngineOutOfMemory``, a sticky device error as ``DeviceError``, anything else unchanged."""
    fault = classify(error)
    if fault is None or isinstance(error, EngineOutOfMemory | DeviceError):
        return error
    translated: BaseException
    if fault is Fault.OUT_OF_MEMORY:
        free_device_memory(error)
        translated = EngineOutOfMemory(
            "the engine ran out of device memory on this job; retry (a shorter text needs less)"
        )
    else:
        _log.error("device error: this worker's model can no longer be trusted", exc_info=error)
        sticky = next(one for one in _causes(error) if _is_sticky(one))
        translated = DeviceError(
            f"the engine's device failed ({_first_line(sticky)}); retry: this worker is replaced"
        )
    translated.__cause__ = error
    return translated


def free_device_memory(error: BaseException) -> None:
    """Let go of what the failed call held (its frames' tensors), then return the allocator's
    cached blocks to the device, so the next job has the memory this one could not get."""
    for one in _causes(error):
        traceback.clear_frames(one.__traceback__)  # skips frames still running
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError | EngineOutOfMemory):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and _says(error, _OUT_OF_MEMORY)


def _is_sticky(error: BaseException) -> bool:
    if isinstance(error, DeviceError):
        return True
    torch = sys.modules.get("torch")
    accelerator_error = getattr(torch, "AcceleratorError", None)  # torch 2.8 and later
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return True
    return isinstance(error, RuntimeError) and _says(error, _STICKY)


def _says(error: BaseException, markers: tuple[str, ...]) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in markers)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200]
