"""The ground floor every phase may import: errors, atomic writes, params and typed configs, console output, the
machine, scores and calibration (numpy only)."""
