"""Reports: what a comparison or a detect pass found (summary.py), as markdown (markdown.py), and where it goes
(publish.py: the job summary, a pull request comment, a commit status, a check run, regression issues)."""
