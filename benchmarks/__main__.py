import os

# oneDNN keeps 1024 compiled CPU kernels by default; five segmentation models interleaved in one process exceed
# that, so every model re-compiled its kernels (seconds) at each of its turns: measured 3.6 s vs 0.9 s end to end
# for ours (benchmarks/results/cpu-2026-12-02*.json). A `pumit segment` process runs one model and does not hit it.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")

import sys

from benchmarks.run import main

sys.exit(main())
