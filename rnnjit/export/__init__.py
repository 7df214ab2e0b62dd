"""Exports of a bundle to other runtimes: `rnnjit.export.c` writes the whole chain as C99."""
