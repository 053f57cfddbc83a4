import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { MetricsDisplay } from "./MetricsDisplay";

describe("MetricsDisplay", () => {
  it("tabulates original against latest accuracy, size and compression ratio", () => {
    render(
      <MetricsDisplay
        metrics={{ original_accuracy: 0.95, current_accuracy: 0.93, original_size_mb: 44.7, current_size_mb: 11.2 }}
      />,
    );
    const row = screen.getByRole("row", { name: /Compression ratio/ });
    expect(within(row).getByText("3.99×")).toBeInTheDocument();
    expect(screen.getByRole("columnheader", { name: "Latest result" })).toBeInTheDocument();
  });

  it("does not claim the original is being measured once the experiment has stopped", () => {
    const { rerender } = render(<MetricsDisplay metrics={null} />);
    expect(screen.getByText(/being measured/)).toBeInTheDocument();
    rerender(<MetricsDisplay metrics={null} finished />);
    expect(screen.queryByText(/being measured/)).not.toBeInTheDocument();
    expect(screen.getByText(/stopped before the original model was measured/)).toBeInTheDocument();
  });
});
