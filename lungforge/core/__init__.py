"""Infrastructure every stage uses and that knows nothing of CT: errors, seeds, CPU and device
choice, atomic files, locks, output-path checks, tensor files and torchrun process groups, plus
the shared vocabulary (label ids, option choices, nodule shapes, label-map drawing)."""
