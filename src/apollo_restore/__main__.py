import sys

from apollo_restore.cli import main

sys.exit(main())
