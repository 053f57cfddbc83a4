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

with contextlib.suppress(ImportError):  # torch is an optional extra; the service tests run without it
    import torch._dynamo  # noqa: F401
