"""Reading the LUNA16 distribution: MetaImage headers and voxels, scans with their lung masks and
annotations, and patient-frame orientation."""
