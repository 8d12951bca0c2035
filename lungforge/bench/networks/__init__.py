"""Networks the benchmark trains: SE-ResNet (patch classification), the fidelity UNet, BatchNorm recalibration."""
