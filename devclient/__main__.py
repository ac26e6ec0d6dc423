"""``python -m devclient``: the reference desktop client's command line (see devclient.cli)."""

import sys

from devclient.cli import main

if __name__ == "__main__":
    sys.exit(main())
