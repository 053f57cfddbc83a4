import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { BoardCorrectionNote } from "./BoardCorrectionNote";

const correction = {
  device: "rpi5", measurements: 3, factors: { int8: 0.5, all: 0.5 }, median_error: 2.0, worst_error: 2.6,
  corrected_median_error: 1.12, corrected_worst_error: 1.3,
};

describe("BoardCorrectionNote", () => {
  it("says how far off the estimator was on the user's boards, before and after the correction", () => {
    render(<BoardCorrectionNote correction={correction} deviceTitle="Raspberry Pi 5" />);
    const note = screen.getByTestId("board-correction");
    expect(note).toHaveTextContent("corrected by 3 measurements on your own boards");
    expect(note).toHaveTextContent("off by a median ×2.00 (worst ×2.60)");
    expect(note).toHaveTextContent("off by a median ×1.12");
  });

  it("claims no corrected error from a single measurement, and shows nothing without one", () => {
    const one = { ...correction, measurements: 1, corrected_median_error: null, corrected_worst_error: null };
    const { rerender } = render(<BoardCorrectionNote correction={one} deviceTitle="Raspberry Pi 5" />);
    expect(screen.getByTestId("board-correction")).toHaveTextContent("1 measurement on");
    expect(screen.getByTestId("board-correction")).toHaveTextContent("Measure a few more");
    rerender(<BoardCorrectionNote correction={null} deviceTitle="Raspberry Pi 5" />);
    expect(screen.queryByTestId("board-correction")).toBeNull();
  });
});
