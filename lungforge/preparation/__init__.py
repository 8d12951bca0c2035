"""`lungforge prepare`: LUNA16 scans → label maps and windowed slices in a store, split by patient.

:func:`~lungforge.preparation.pipeline.prepare` runs the recipe (:mod:`.options`) over scans in
worker processes (:mod:`.workers`, :mod:`.scan_recipe`, :mod:`.masks`), after checking the inputs
(:mod:`.input_checks`, :mod:`.input_manifest`), and writes the store (:mod:`.writer`).
"""
