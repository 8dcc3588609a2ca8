import sys

from scaffold.resource import main

sys.exit(main(sys.argv[1:]))
