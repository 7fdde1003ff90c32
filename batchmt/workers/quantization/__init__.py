"""Calibrated, layer-wise mixed-precision weight quantization (`batchmt quantize`).

formats.py (bit widths, groups, the compressed-tensors pack layout), layers.py (modules that
keep packed weights resident), units.py (which tensors of a family are quantized, and which
move together), sensitivity.py (per-unit output KL on calibration pairs), allocate.py (bit
widths under a size budget), folder.py (writing and loading a quantized model folder),
evaluate.py (BLEU / chrF / speed of a variant).
"""

from batchmt.pipeline.errors import UserError


class QuantizationError(UserError, ValueError):
    """A quantization that cannot run as configured, or a quantized folder that cannot load:
    the message names the file or key and the fix (`batchmt` prints it, exit 2)."""
