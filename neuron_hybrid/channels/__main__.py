"""Regenerate the committed MOD files: ``python -m neuron_hybrid.channels [DIRECTORY]``."""
import sys

from . import MOD_DIR, write_mod_files

if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else MOD_DIR
    for p in write_mod_files(target, clean=True):
        print(p)
