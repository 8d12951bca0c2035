"""The report of `bench all`: report.md/json, figures and the nodule gallery."""
