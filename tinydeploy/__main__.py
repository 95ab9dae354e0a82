import sys

from tinydeploy.cli import main

sys.exit(main())
