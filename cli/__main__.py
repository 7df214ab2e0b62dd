"""``python -m cli`` from a checkout: the ``rnnjit`` command (see `rnnjit.cli.app`)."""
from rnnjit.cli.app import main

main()
