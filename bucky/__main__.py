"""`python -m bucky`: the same as the `bucky` command."""

import sys

from bucky.cli import main

sys.exit(main())
