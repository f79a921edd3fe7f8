"""Calibration: streaming statistics, the cache, the range strategies."""
