"""`python -m valstat` runs the command line."""

import sys

from valstat.cli import main

sys.exit(main())
