"""The cross-validation protocol: folds, learning-curve cuts, leakage, selection, budgets, controls, and the detect/localize tasks."""
