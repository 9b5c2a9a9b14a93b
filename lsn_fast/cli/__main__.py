import sys

from lsn_fast.cli.main import main

sys.exit(main())
