"""Post-training compression and export of a checkpoint: the unstructured pruning sweep
(sweep.py), structured channel pruning (structured.py), ONNX / INT8 export (export.py)."""
