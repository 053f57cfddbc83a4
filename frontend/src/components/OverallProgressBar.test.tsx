import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { OverallProgressBar } from "./OverallProgressBar";

const overall = { completed_techniques: 0, total_techniques: 7, progress_percent: 4, eta_seconds: 95 };

describe("OverallProgressBar", () => {
  it("says the original model is being measured before any technique starts", () => {
    render(<OverallProgressBar overall={overall} finished={false} measuringOriginal />);
    expect(screen.getByText("Measuring the original model")).toBeInTheDocument();
    expect(screen.queryByText(/Technique 1 of 7/)).not.toBeInTheDocument();
    expect(screen.getByTestId("overall-percent").parentElement).toHaveTextContent(/left/);
  });

  it("counts techniques once they run, and what is done at the end", () => {
    const { rerender } = render(<OverallProgressBar overall={overall} finished={false} />);
    expect(screen.getByText("Technique 1 of 7")).toBeInTheDocument();
    rerender(<OverallProgressBar overall={{ ...overall, completed_techniques: 7, progress_percent: 100 }} finished />);
    expect(screen.getByText("7 of 7 techniques done")).toBeInTheDocument();
  });
});
