"""Readers of a store for training and evaluation: :class:`~lungforge.data.dataset.SliceDataset` and slice resizing (:mod:`.resize`)."""
