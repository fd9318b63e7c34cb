"""`python -m kdviz`: the command line."""

import sys

from kdviz.cli import main

sys.exit(main())
