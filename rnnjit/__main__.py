"""``python -m rnnjit``: the ``rnnjit`` command."""
from rnnjit.cli.app import main

main()
