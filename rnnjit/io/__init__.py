"""Arrow and Parquet I/O shared by every runner.

- `rnnjit.io.arrow`: list-layout columns to padded numpy arrays and back (no per-row Python loop);
  `rnnjit.io.shapes`: the other feature shapes users have (tensors, univariate series);
- `rnnjit.io.fs`: local paths, URIs (`pyarrow.fs`), temporary files created exclusively, store-failure hints;
- `rnnjit.io.dataset`: listing files (hive partitions, non-Parquet files skipped) and reading them in bounded batches;
- `rnnjit.io.long_layout`: one-row-per-step input grouped into whole sequences;
- `rnnjit.io.targets`: output format from the name, and the checks before writing;
- `rnnjit.io.sinks`: Parquet/CSV/JSON-lines writers that commit by rename (`rnnjit.io.text`: the text encodings);
- `rnnjit.io.dataset_out`, `rnnjit.io.manifest`: one output file per input file, the directory's lock,
  manifest (input roots, content fingerprints) and ``_SUCCESS``;
- `rnnjit.io.signals`: SIGTERM as an interrupt, held back while a temporary file is created;
- `rnnjit.io.pandas_meta`: the pandas metadata kept for passed-through columns;
- `rnnjit.io.killpoints`: the kill-test hook (inert unless ``RNNJIT_KILL_AT`` is set).
"""
