"""``python -m spc_embed``: the ``spc-embed`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # not when multiprocessing re-imports it in a uvicorn worker
    sys.exit(main())
