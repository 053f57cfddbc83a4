import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { ChartPoint } from "../lib/results";
import { ParetoChart } from "./ParetoChart";

const original: ChartPoint = {
  technique: "baseline",
  title: "Original model",
  accuracy: 0.997,
  sizeMb: 0.38,
  latencyMs: 1.5,
  onFront: false,
  isBaseline: true,
  recommended: false,
};

describe("ParetoChart", () => {
  it("plots nothing, and says so, when no technique finished (a cancelled or failed experiment)", () => {
    render(<ParetoChart points={[original]} deviceTitle="Raspberry Pi 4 Model B" />);
    expect(screen.getByText(/nothing to plot/)).toBeInTheDocument();
    expect(screen.queryByRole("img")).not.toBeInTheDocument();
    expect(screen.queryByText(/yet/)).not.toBeInTheDocument();
  });

  it("names the Pareto front when techniques finished", () => {
    const int8: ChartPoint = { ...original, technique: "ptq_int8", title: "Post-training INT8", sizeMb: 0.1,
      isBaseline: false, onFront: true };
    render(<ParetoChart points={[original, int8]} deviceTitle="Raspberry Pi 4 Model B" />);
    expect(screen.getByText("Pareto front: Post-training INT8.")).toBeInTheDocument();
    expect(screen.getByRole("img")).toBeInTheDocument();
  });
});
