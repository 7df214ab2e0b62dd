"""pyspark is an optional extra: `import rnnjit` never imports it, and without it the Spark runner says how to get it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_helpers import list_table, make_bundle, random_sequences, run, write


def test_import_rnnjit_and_its_cli_do_not_import_pyspark():
    code = "import sys, rnnjit, rnnjit.cli.app, rnnjit.spark; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_spark_runner_without_pyspark_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # what `import pyspark` sees when it is not installed
    bundle = make_bundle(tmp_path)
    write(list_table(random_sequences(3, 3)), tmp_path / "in.parquet")
    r = run("score", "--runner", "spark", "-m", bundle, "-i", tmp_path / "in.parquet", "-o", tmp_path / "out")
    assert r.exit_code == 2, r.stderr
    assert r.stderr == 'error: the Spark runner needs pyspark 4.1 or later: pip install "rnnjit[spark]"\n'
    from rnnjit import InputError
    from rnnjit.spark import score_dataframe

    with pytest.raises(InputError, match=r"pip install \"rnnjit\[spark\]\""):
        score_dataframe(None, bundle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.npz", "in.parquet", "src-bundle.npz"]


def test_spark_runner_refuses_an_old_pyspark(monkeypatch):
    import types

    from rnnjit import InputError
    from rnnjit.spark.frame import _pyspark

    monkeypatch.setitem(sys.modules, "pyspark", types.SimpleNamespace(__version__="3.5.1"))
    with pytest.raises(InputError, match=r"^found pyspark 3\.5\.1; the Spark runner needs pyspark 4\.1 or later"):
        _pyspark()
