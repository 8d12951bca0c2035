import json
import math
import subprocess
import sys

import pytest

from lungforge.bench.protocol.foldlog import FoldLog
from lungforge.core.errors import InputError


def test_finished_folds_survive_a_restart(tmp_path):
    log = FoldLog(tmp_path, "detect", {"config": {"epochs": 2}})
    assert log.get("A", 0) is None
    log.put("A", 0, {"accuracy": 0.9})
    again = FoldLog(tmp_path, "detect", {"config": {"epochs": 2}})
    assert again.get("A", 0) == {"accuracy": 0.9}
    assert again.get("A", 1) is None


def test_other_arguments_are_refused(tmp_path):
    FoldLog(tmp_path, "detect", {"config": {"epochs": 2}}).put("A", 0, {"accuracy": 0.9})
    with pytest.raises(InputError, match="config differ"):
        FoldLog(tmp_path, "detect", {"config": {"epochs": 3}})


def test_memory_only_without_directory():
    log = FoldLog(None, "localize", {})
    log.put("B", 1, {"AP50": 0.5})
    assert log.get("B", 1) == {"AP50": 0.5}


def test_fold_files_are_standard_json_and_nan_comes_back(tmp_path):
    """An undefined metric (NaN) is `null` in the file (strict JSON parsers read it) and NaN once resumed."""
    FoldLog(tmp_path, "detect", {"config": {}}).put("A", 0, {"accuracy": 0.5, "recall_ge10mm": math.nan, "by_size": {"ge10mm": 0}})
    text = (tmp_path / "detect" / "A-fold0.json").read_text()
    strict = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in a fold file"))
    assert strict["recall_ge10mm"] is None
    row = FoldLog(tmp_path, "detect", {"config": {}}).get("A", 0)
    assert row["accuracy"] == 0.5 and math.isnan(row["recall_ge10mm"]) and row["by_size"] == {"ge10mm": 0}


def test_a_fold_file_that_does_not_fit_is_named(tmp_path):
    """A full disk (here a 200-byte file size limit) while a fold is saved: one error naming the
    fold file, and the folds saved before it stay."""
    script = f"""
import resource
from lungforge.bench.protocol.foldlog import FoldLog
from lungforge.core.errors import OutputError
log = FoldLog({str(tmp_path)!r}, "detect", {{"config": {{}}}})
log.put("A", 0, {{"accuracy": 0.5}})
resource.setrlimit(resource.RLIMIT_FSIZE, (200, resource.RLIM_INFINITY))
try:
    log.put("A", 1, {{"accuracy": 0.5, "notes": "x" * 400}})
except OutputError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'detect' / 'A-fold1.json'}: cannot write (File too large)"), done.stdout
    assert "rerun with the same arguments to resume" in done.stdout
    assert FoldLog(tmp_path, "detect", {"config": {}}).get("A", 0) == {"accuracy": 0.5}
    assert sorted(p.name for p in (tmp_path / "detect").iterdir()) == ["A-fold0.json", "run.json"]
