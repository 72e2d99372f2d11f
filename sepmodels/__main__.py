import sys

from sepmodels.cli import main

sys.exit(main())
