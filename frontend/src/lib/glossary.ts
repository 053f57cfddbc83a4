/**
 * One sentence per metric, shown in tooltips. Technique, board, goal and dataset descriptions come from the
 * catalog; these describe the report's columns, whose definitions live in docs/architecture.md section 3.
 *
 * The constraint tables are checked against the generated `Constraints` model: a limit the service adds or drops
 * fails the type check until it is described here.
 */
import type { ConstraintName } from "../api/types";

export const METRIC_HELP = {
  accuracy: "Top-1 accuracy on the dataset's test split, which no technique ever trains or calibrates on.",
  accuracy_drop:
    "Accuracy compared with the original model, in percentage points: −1.4 pt lost 1.4 points, +0.3 pt gained 0.3.",
  size: "Bytes of the deployable file you download and run on the board (1 MB = 1,000,000 bytes).",
  compression_ratio: "The original file's size divided by this file's size: 4× means four times smaller.",
  host_latency: "Median time of one inference (batch 1) of the real artifact in its board runtime, on the server.",
  board_latency: "Estimated time of one inference on the chosen Raspberry Pi, from a calibrated model of the runtime.",
  board_memory: "Estimated peak memory on the board: weights, the largest live activations and the runtime.",
  board_energy: "Estimated energy of one inference on the board: power times latency.",
  status: "Whether the technique completed, failed (with the reason) or was skipped.",
  fits: "Whether the model's estimated peak memory fits in the RAM the board leaves free after its OS.",
  pareto: "A result is on the Pareto front when no other result is at least as good on every objective.",
  eta: "Estimated time left, from the measured speed of this run's own stages.",
} as const;

export const CONSTRAINT_HELP = {
  min_accuracy: "Results below this test accuracy are ruled out.",
  max_accuracy_drop: "Results that lose more accuracy than this, compared with the original, are ruled out.",
  max_size_mb: "Results whose deployable file is larger than this are ruled out.",
  max_latency_ms: "Results slower than this on the target board (estimated) are ruled out.",
} as const satisfies Record<ConstraintName, string>;

export const CONSTRAINT_LABELS = {
  min_accuracy: "Minimum accuracy (%)",
  max_accuracy_drop: "Maximum accuracy drop (percentage points)",
  max_size_mb: "Maximum size (MB)",
  max_latency_ms: "Maximum latency on the board (ms)",
} as const satisfies Record<ConstraintName, string>;
