"""The pieces of ``python -m mambalab.bench``: which implementations exist here, how a training
step and an op are timed, the profile breakdown, and the report (rich table and JSON)."""
