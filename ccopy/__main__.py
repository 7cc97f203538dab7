import sys

from ccopy.cli import main

sys.exit(main())
