"""How the three channel allocations of Keras structured pruning trade FLOPs for accuracy on one trained model.

For each share of the prunable channels, the model is pruned with each allocation of ``filter_pruning.ALLOCATIONS``
(protected, as the techniques prune), BatchNorm recalibrated on 1,000 train images, scored on the test split, then
given one short recovery epoch on 300 train images (about what a search trial gets) and scored again. Prints a
markdown table. The model is the one ``benchmarks/tensorflow_techniques.py`` trains into its ``--work`` folder:

    python -m benchmarks.keras_allocations /tmp/kp_work/mobilenet_v2_035.keras --ratios 0.3,0.5,0.6
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path, help="a .keras file trained on digits at 32x32x3")
    parser.add_argument("--ratios", default="0.3,0.5,0.6", help="shares of the prunable channels to remove")
    args = parser.parse_args()

    import numpy as np
    import tf_keras

    from edgeopt.data.adapt import adapt
    from edgeopt.data.presets import load_preset
    from edgeopt.estimate import profile_keras
    from edgeopt.frameworks.tensorflow.filter_pruning import ALLOCATIONS, prune_filters
    from edgeopt.frameworks.tensorflow.training import fine_tune, recalibrate_batchnorm
    from edgeopt.progress import silent_reporter
    from edgeopt.settings import get_settings

    data = adapt(load_preset("digits", get_settings(), seed=0), 32, 32, 3)
    model = tf_keras.models.load_model(args.model, compile=False)
    flops = profile_keras(model).flops
    recovery = dataclasses.replace(data, x_train=data.x_train[:300], y_train=data.y_train[:300])

    def accuracy(candidate: object) -> float:
        return float(np.mean(np.argmax(candidate.predict(data.x_test, verbose=0), axis=1) == data.y_test))

    print(f"Original: {accuracy(model):.1%} on {len(data.y_test)} test images, {model.count_params()} parameters.\n")
    print("| share | allocation | FLOPs ratio | params | recalibrated | after one short recovery epoch |")
    print("|---|---|---|---|---|---|")
    for ratio in (float(r) for r in args.ratios.split(",")):
        for allocation in ALLOCATIONS:
            pruned = prune_filters(model, ratio, protect=True, allocation=allocation).model
            recalibrate_batchnorm(pruned, data.x_train[:1000], 0)
            before = accuracy(pruned)
            fine_tune(pruned, recovery, epochs=1, lr=1e-3, batch_size=32, reporter=silent_reporter("probe"),
                      stage="probe", seed=0)  # fmt: skip
            recalibrate_batchnorm(pruned, data.x_train[:1000], 0)
            print(f"| {ratio:.0%} | {allocation} | {flops / profile_keras(pruned).flops:.2f}x | "
                  f"{pruned.count_params()} | {before:.1%} | {accuracy(pruned):.1%} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
