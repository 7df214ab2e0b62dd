"""Print ``name==floor`` for each runtime dependency of pyproject.toml (the lowest versions it allows).

Usage: python3 .ci/pins.py [pyproject.toml] [--without NAME ...]
A dependency without a ``>=`` floor is printed as declared.
"""

import re
import sys
import tomllib

args = sys.argv[1:]
without = {args[i + 1].lower() for i, a in enumerate(args) if a == "--without"}
paths = [a for i, a in enumerate(args) if a != "--without" and (i == 0 or args[i - 1] != "--without")]
with open(paths[0] if paths else "pyproject.toml", "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
for dep in deps:
    name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0)
    if name.lower() in without:
        continue
    floor = re.search(r">=\s*([0-9][^,;\s]*)", dep)
    print(f"{name}=={floor.group(1)}" if floor else dep)
