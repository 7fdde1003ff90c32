"""Table formats an output can commit to: Delta Lake (`delta.py`) and Iceberg (`iceberg.py`).

Both register data files the job already wrote, in one atomic commit that records the job
(`common.CommitRequest`), so a rerun can tell that the commit happened.
"""
