"""Where a benchmark's figures go: ``bench/results/<name>.txt``, also printed."""

import os


def write(path, text):
    """Write ``text`` (ending in a newline) to ``path``, making ``results/`` if
    missing, and print it: the file is what the README and notes quote."""
    if not text.endswith("\n"):
        text += "\n"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    print(text, end="")
