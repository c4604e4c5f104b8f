"""Offline tools, not shipped in the images: benchmarks, the load test, the drift monitor, the PR report, the
promotion gate and its registry, the experiment table and the results page."""
