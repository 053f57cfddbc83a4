"""Root test configuration.

Import order matters in a process that loads both frameworks: TensorFlow imported before ``torch._dynamo`` makes a
later ``torch.export`` crash the process (docs/library-notes.md). Importing ``torch._dynamo`` here, before any test
module can import TensorFlow, keeps one pytest process safe for both.
"""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("EDGEOPT_OFFLINE", "1")
# Tests check that latency is measured, not how steady it is: 50 timed calls are enough there.
os.environ.setdefault("EDGEOPT_LATENCY_SECONDS", "0")
# Re-timing at an experiment's end in the experiment's own process saves a framework import per experiment (dozens
# here); the fresh process is tested on its own (tests/pytorch/test_host_timing_process.py) and by `edgeopt optimize`
# end to end (tests/engine/test_cli_optimize.py).
os.environ.setdefault("EDGEOPT_HOST_TIMING", "this_process")

with contextlib.suppress(ImportError):  # torch is an optional extra; the service tests run without it
    import torch._dynamo  # noqa: F401
