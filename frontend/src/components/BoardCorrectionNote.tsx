/**
 * How far the estimator was off on the user's own boards of the target device, and that the table's estimates are
 * corrected by those measurements (report.board_correction, fitted in src/edgeopt/board_correction.py).
 */
import type { BoardCorrection } from "../api/types";

const times = (factor: number) => `×${factor.toFixed(2)}`;

export function BoardCorrectionNote({ correction, deviceTitle }: { correction?: BoardCorrection | null; deviceTitle: string }) {
  if (!correction) return null;
  const n = correction.measurements;
  const after =
    correction.corrected_median_error != null
      ? ` After correction, each figure predicted from your others is off by a median ${times(correction.corrected_median_error)}.`
      : " Measure a few more artifacts to see how well the correction predicts your board.";
  return (
    <p className="text-sm text-slate-700" data-testid="board-correction">
      {deviceTitle} estimates are corrected by {n} measurement{n === 1 ? "" : "s"} on your own boards ("by your boards"
      under each estimate): the estimator was off by a median {times(correction.median_error)} (worst{" "}
      {times(correction.worst_error)}) on them.{after}
    </p>
  );
}
