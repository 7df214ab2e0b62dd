"""Arrow and Parquet I/O shared by every runner.

- `rnnjit.io.arrow`: list-layout columns to padded numpy arrays and back (no per-row Python loop);
- `rnnjit.io.dataset`: reading a file, a directory or a glob in bounded batches;
- `rnnjit.io.long_layout`: one-row-per-step input grouped into whole sequences;
- `rnnjit.io.sinks`: Parquet/CSV/JSON-lines writers that commit by rename.
"""
