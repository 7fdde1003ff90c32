"""Calibrated, layer-wise mixed-precision weight quantization (`batchmt quantize`).

formats.py (bit widths, groups, the compressed-tensors pack layout), layers.py (modules that
keep packed weights resident), units.py (which tensors of a family are quantized, and which
move together), calibration.py (teacher-forced batches), rounding.py (GPTQ and searched
scales: the integers a unit stores in a format), sensitivity.py (per-unit output KL on
calibration pairs), folder.py (writing and loading a quantized model folder). The allocation
under the budget and the report's variants are the job's (jobs/quantize/).
"""

from batchmt.pipeline.errors import UserError


class QuantizationError(UserError, ValueError):
    """A quantization that cannot run as configured, or a quantized folder that cannot load:
    the message names the file or key and the fix (`batchmt` prints it, exit 2)."""
