"""The phantom: a synthetic LUNA16-format dataset (scans, lung masks, annotations) whose anatomy,
textures and nodule sizes follow LUNA16 statistics, so the pipeline runs offline.

:func:`~lungforge.phantom.scans.make_phantom` writes one.
"""
