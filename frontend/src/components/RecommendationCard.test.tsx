import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { catalog } from "../test/catalog";
import { recommendation, run } from "../test/fixtures";
import { RecommendationCard } from "./RecommendationCard";

const props = {
  device: "rpi4",
  deviceTitle: "Raspberry Pi 4 Model B",
  goalTitle: "Balanced",
  techniques: catalog.techniques,
};

describe("RecommendationCard", () => {
  it("shows the technique, the reasoning, pros, cons and each limit's verdict", () => {
    render(<RecommendationCard {...props} recommendation={recommendation()} run={run("ptq_int8")} />);
    expect(screen.getByRole("heading", { name: "Recommendation for “Balanced”" })).toBeInTheDocument();
    expect(screen.getByTestId("recommended-technique")).toHaveTextContent("Post-training INT8");
    expect(screen.getByText(/4.0x smaller and 2.1x faster/)).toBeInTheDocument();
    expect(screen.getByText("2.1x faster on the board")).toBeInTheDocument();
    expect(screen.getByText("1.0 points less accurate")).toBeInTheDocument();
    expect(screen.getByText("Meets all your limits")).toBeInTheDocument();
    const limits = screen.getByRole("list", { name: "Limits of the recommended result" });
    expect(within(limits).getByText(/Maximum accuracy drop.*: met/)).toHaveAttribute("data-constraint", "met");
    // The run's own figures, with the board's latency.
    expect(screen.getByText(/95.0 % accuracy/)).toHaveTextContent("2.00 ms on Raspberry Pi 4 Model B");
  });

  it("says plainly when the result is a best effort that misses a limit", () => {
    const rec = recommendation({
      technique: "ptq_int4",
      all_constraints_met: false,
      constraints: { ptq_int4: { max_accuracy_drop: false, max_size_mb: true } },
    });
    render(<RecommendationCard {...props} recommendation={rec} run={run("ptq_int4")} />);
    expect(screen.getByText("Best effort: not every limit is met")).toBeInTheDocument();
    expect(screen.getByText(/Maximum accuracy drop.*: missed/)).toHaveAttribute("data-constraint", "missed");
    expect(screen.getByText(/Maximum size.*: met/)).toHaveAttribute("data-constraint", "met");
  });

  it("claims no limits met when none were set, and shows no empty pros or cons", () => {
    const rec = recommendation({ cons: [], constraints: {}, all_constraints_met: true });
    render(<RecommendationCard {...props} recommendation={rec} run={run("ptq_int8")} />);
    expect(screen.queryByText("Meets all your limits")).not.toBeInTheDocument();
    expect(screen.getByText("No limits were set.")).toBeInTheDocument();
    expect(screen.getByRole("heading", { name: "Pros" })).toBeInTheDocument();
    expect(screen.queryByRole("heading", { name: "Cons" })).not.toBeInTheDocument();
    expect(screen.queryByText("None listed.")).not.toBeInTheDocument();
  });

  it("has an empty state before any recommendation exists", () => {
    render(<RecommendationCard {...props} recommendation={null} run={undefined} />);
    expect(screen.getByText(/No recommendation yet/)).toBeInTheDocument();
  });

  it("says how the experiment ended when it ended without a recommendation", () => {
    render(<RecommendationCard {...props} recommendation={null} run={undefined} endedAs="was cancelled" />);
    expect(
      screen.getByText("No recommendation: the experiment was cancelled before any technique finished."),
    ).toBeInTheDocument();
    expect(screen.queryByText(/yet/)).not.toBeInTheDocument();
  });
});
