"""tagrules benchmarks: ``make bench`` (``python -m benchmarks``)."""
