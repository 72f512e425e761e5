"""``python -m disanatdetect ...``: the command line (see :mod:`disanatdetect.cli`).

This is how the Slicer module starts the detection in a child process with Slicer's own Python
(``PythonSlicer -m disanatdetect detect ... --progress json``), where no ``disanatdetect`` script is on the path.
"""

import sys

from disanatdetect.cli import main

if __name__ == "__main__":
    sys.exit(main())
