import pytest

from lungforge.bench.protocol.foldlog import FoldLog
from lungforge.errors import InputError


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
