"""From stored measurements to verdicts: pure statistics (detect.py, abstats.py), the series they apply to
(series.py), detect passes and findings (findings.py), confirmations (confirm.py) and A/B sessions (ab.py)."""
