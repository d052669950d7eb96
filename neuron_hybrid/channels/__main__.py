"""Regenerate the committed MOD files: ``python -m neuron_hybrid.channels [DIRECTORY]``."""
import sys

from pathlib import Path

from . import INSTANTANEOUS_MOD_DIR, MOD_DIR, write_instantaneous_mod_files, write_mod_files

if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else MOD_DIR
    for p in write_mod_files(target, clean=True):
        print(p)
    for p in write_instantaneous_mod_files(target / INSTANTANEOUS_MOD_DIR.name):
        print(p)
