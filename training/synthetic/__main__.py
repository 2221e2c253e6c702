import sys

from training.synthetic.generate import main

sys.exit(main())
