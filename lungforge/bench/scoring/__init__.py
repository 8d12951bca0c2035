"""Metrics and statistics: classification and FROC metrics, paired tests, FID and label fidelity."""
