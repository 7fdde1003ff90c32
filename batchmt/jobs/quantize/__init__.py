"""`batchmt quantize CONFIG`: calibrated mixed-precision quantization of a model folder
(command.py drives it, report.py writes report.html; the compute is workers/quantization/)."""
