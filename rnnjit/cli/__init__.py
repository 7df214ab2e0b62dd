"""rnnjit command-line interface (installed as rnnjit.cli)."""
