"""Label ids of lungforge label maps: the one place they are defined (listed in docs/store-format.md)."""

from __future__ import annotations

from dataclasses import dataclass

BACKGROUND = 0
LEFT_LUNG = 1
RIGHT_LUNG = 2
TRACHEA = 3
BODY = 4
NODULE = 5

LABELS: dict[int, str] = {
    BACKGROUND: "background",
    LEFT_LUNG: "left_lung",
    RIGHT_LUNG: "right_lung",
    TRACHEA: "trachea",
    BODY: "body",
    NODULE: "nodule",
}
NUM_CLASSES = len(LABELS)
LUNG_LABELS = (LEFT_LUNG, RIGHT_LUNG)


@dataclass(frozen=True)
class SegValues:
    """Values of the LUNA16 `seg-lungs-LUNA16` masks that map to our lung/trachea labels."""

    left: int = 3
    right: int = 4
    trachea: int = 5

    def __post_init__(self) -> None:
        values = {"left": self.left, "right": self.right, "trachea": self.trachea}
        same = [f"{k}={v}" for k, v in values.items() if list(values.values()).count(v) > 1]
        if same:
            # One mask value cannot be two structures: the later label would silently win.
            raise ValueError(f"seg values must be distinct, got {' and '.join(same)}")

    @classmethod
    def parse(cls, text: str) -> SegValues:
        """Parse `left=3,right=4,trachea=5` (any subset of the keys; others keep defaults)."""
        values = {"left": cls.left, "right": cls.right, "trachea": cls.trachea}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in values:
                raise ValueError(f"seg value must look like left=3,right=4,trachea=5, got {item!r}")
            try:
                values[key.strip()] = int(value)
            except ValueError:
                raise ValueError(f"seg value for {key.strip()} must be an integer, got {value!r}") from None
        return cls(**values)


def labels_attr() -> dict[str, str]:
    """The label table as stored in Zarr attributes (JSON keys are strings)."""
    return {str(k): v for k, v in LABELS.items()}
