"""Resumable stages now live in `uda_seg_core.stages` (a floor below the jobs, so that
`optimize.deploy` can resume too); this name stays for the study's modules."""
from uda_seg_core.stages import StageError, Stages

__all__ = ["StageError", "Stages"]
