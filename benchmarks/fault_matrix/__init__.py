"""The fault matrix's rows and runner, shared by the CLI (benchmarks/faults.py) and the slow pytest cases
(tests/faults/test_matrix.py). Importing the package registers every row in `FAULTS`, in table order."""

import importlib

from .lab import FAULTS, FaultFn, Lab, Row, code_matches, run_row

ROW_MODULES = (
    "rows_inputs",
    "rows_stores",
    "rows_processes",
    "rows_issue19_inputs",
    "rows_issue19_small",
    "rows_issue19_stores",
    "rows_stdout_provenance",
    "rows_bounds",
    "rows_small",
)
for _module in ROW_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["FAULTS", "ROW_MODULES", "FaultFn", "Lab", "Row", "code_matches", "run_row"]
