"""Names of the model-free control stores that `bench --controls` makes (:mod:`.controls`), apart
from their making so that the fold runner and the verdict can name them without importing augment."""

CONTROL_NAMES = ("mislabeled", "paste", "blob")
