import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { RunResult } from "../api/types";
import { StrengthSearchCurves } from "./StrengthSearchCurves";

const searched: RunResult = {
  technique: "prune_structured",
  status: "completed",
  duration_s: 30,
  notes: "",
  search: {
    knob: "channel_sparsity",
    budget_points: 1,
    budget_source: "default",
    baseline_val_accuracy: 0.98,
    validation_images: 216,
    trials: [
      { setting: 0.2, val_accuracy: 0.975, drop_points: 0.5, within_budget: true, seconds: 1 },
      { setting: 0.4, val_accuracy: 0.9, drop_points: 8, within_budget: false, seconds: 1 },
      { setting: 0.3, val_accuracy: 0.972, drop_points: 0.8, within_budget: true, seconds: 1 },
    ],
    chosen: 0.3,
    reason: "Chose 30% of the channels removed.",
    time_budget_s: 60,
    seconds: 12,
    stopped_by_time: false,
  },
};

describe("StrengthSearchCurves", () => {
  it("lists every setting tried and marks the chosen one", () => {
    render(<StrengthSearchCurves runs={[searched]} titles={{ prune_structured: "Structured pruning" }} />);
    expect(screen.getByText(/Structured pruning: channel_sparsity = 0.3/)).toBeInTheDocument();
    const chosen = screen.getByRole("row", { name: /chosen/ });
    expect(within(chosen).getByText("0.3")).toBeInTheDocument();
    expect(screen.getByRole("row", { name: /over budget/ })).toHaveTextContent("0.4");
  });

  it("draws nothing when no technique searched", () => {
    const { container } = render(
      <StrengthSearchCurves runs={[{ technique: "ptq_int8", status: "completed", duration_s: 5, notes: "" }]} titles={{}} />,
    );
    expect(container).toBeEmptyDOMElement();
  });
});
