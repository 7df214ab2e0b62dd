"""The owner's top-level ``cli/`` entry: a thin shim over `rnnjit.cli`.

The typer application lives in ``rnnjit/cli/`` (installed with the package).
This folder is not installed; from a checkout ``python -m cli score ...`` runs
the same command as ``rnnjit score ...``.
"""
