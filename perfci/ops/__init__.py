"""Operations around the runs: which builds exist (watch.py), which jobs to run on them (plan.py), and where
the data lives between CI jobs (data.py)."""
