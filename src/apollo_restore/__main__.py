"""`python -m apollo_restore ...`: the `apollo` command (also how torchrun starts a training rank)."""

import sys

from apollo_restore.cli import main

sys.exit(main())
