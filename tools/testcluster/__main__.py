"""Entry point of `python -m testcluster` (PYTHONPATH=tools; see `make cluster-up`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
