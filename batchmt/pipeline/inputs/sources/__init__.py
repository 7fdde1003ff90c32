"""Where a job's input files come from: hive folders of Parquet files, or the live files of
one version of a Delta or Iceberg table. Each source lists files with their partition
values and opens none of them; pipeline/inputs/plan.py filters and plans them, and with
input.since increments.py keeps only the files new since an earlier state."""
