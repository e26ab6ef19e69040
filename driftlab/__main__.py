import sys

from driftlab.cli import main

sys.exit(main())
