import sys

from ubft.cli import main

sys.exit(main())
