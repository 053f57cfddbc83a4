"""``edgeopt bench`` on a real ``.tflite``: LiteRT alone, no TensorFlow or PyTorch imported (what a Pi installs)."""

from __future__ import annotations

import json
import subprocess
import sys

from edgeopt.techniques import TechniqueOutput

PROBE = """
import json, sys
from edgeopt.bench import bench
result = bench(sys.argv[1], threads=2, min_seconds=0)
loaded = [name for name in ("tensorflow", "keras", "tf_keras", "torch", "executorch") if name in sys.modules]
print(json.dumps({"result": result.to_dict(), "frameworks_loaded": loaded}))
"""


def test_bench_times_a_tflite_with_litert_only(tf_baseline: TechniqueOutput) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tf_baseline.artifact)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["frameworks_loaded"] == []
    result = out["result"]
    assert result["runtime"] == "litert-xnnpack" and result["threads"] == 2
    assert result["input_shape"][0] == 1 and len(result["input_shape"]) == 4
    assert 0 < result["latency_ms"]["host"] <= result["latency_ms"]["host_p90"]
