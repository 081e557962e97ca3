"""The study pipeline: a recipe's stages in one run directory (``Study``), its record (``ledger``), its inputs
(``inputs``), the stages (``training``, ``evaluation``) and the report (``report``)."""

from .ledger import RunLedger, environment, process_rank, study_identity
from .study import Study

__all__ = ["RunLedger", "Study", "environment", "process_rank", "study_identity"]
