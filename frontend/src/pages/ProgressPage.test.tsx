import { act, render, screen } from "@testing-library/react";
import { MemoryRouter, Route, Routes } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CatalogContextProvider } from "../hooks/useCatalog";
import { catalog } from "../test/catalog";
import { FakeWebSocket } from "../test/FakeWebSocket";
import { run } from "../test/fixtures";
import { ProgressPage } from "./ProgressPage";

const progress = (done: number, percent: number, stage: string) => ({
  current_technique: { name: "ptq_int4", progress_percent: 40, eta_seconds: 12, stage },
  overall_progress: { completed_techniques: done, total_techniques: 3, progress_percent: percent, eta_seconds: 95 },
  metrics: { original_accuracy: 0.96, current_accuracy: 0.95, original_size_mb: 1, current_size_mb: 0.25 },
});

const snapshot = (percent: number, runs: unknown[] = [run("ptq_int8")]) => ({
  type: "snapshot",
  experiment_id: "e1",
  experiment: { id: "e1", name: "demo", status: "running", techniques: ["ptq_int8", "ptq_int4", "prune_structured"] },
  runs,
  progress: progress(1, percent, "Calibrating"),
});

function renderPage() {
  return render(
    <MemoryRouter initialEntries={["/experiments/e1/progress"]}>
      <CatalogContextProvider value={catalog}>
        <Routes>
          <Route path="/experiments/:experimentId/progress" element={<ProgressPage />} />
          <Route path="/experiments/:experimentId/results" element={<p>results page</p>} />
        </Routes>
      </CatalogContextProvider>
    </MemoryRouter>,
  );
}

describe("ProgressPage", () => {
  beforeEach(() => {
    FakeWebSocket.reset();
    vi.useFakeTimers();
    vi.stubGlobal("WebSocket", FakeWebSocket);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  it("shows live progress, a visible reconnecting state, and opens the results at the end", () => {
    renderPage();
    const first = FakeWebSocket.latest();
    expect(first.url).toMatch(/\/ws\/experiments\/e1$/);
    act(() => {
      first.serverOpen();
      first.serverSend(snapshot(40));
    });
    expect(screen.getByText("Technique 2 of 3")).toBeInTheDocument();
    expect(screen.getByRole("progressbar", { name: "Overall progress" })).toHaveAttribute("aria-valuenow", "40");
    expect(screen.getByTestId("stage")).toHaveTextContent("Calibrating");
    expect(screen.getByText(/about 1 min 35 s left/)).toBeInTheDocument();
    expect(screen.getByRole("listitem", { current: "step" })).toHaveTextContent("Post-training INT4 weights");

    act(() => first.serverSend({ type: "progress_update", experiment_id: "e1", ...progress(1, 55, "Evaluating accuracy") }));
    expect(screen.getByRole("progressbar", { name: "Overall progress" })).toHaveAttribute("aria-valuenow", "55");
    expect(screen.getByTestId("stage")).toHaveTextContent("Evaluating accuracy");

    act(() => first.serverClose(1006));
    expect(screen.getByTestId("reconnecting")).toHaveTextContent(/Reconnecting/);
    act(() => vi.advanceTimersByTime(1000));
    const second = FakeWebSocket.latest();
    expect(second).not.toBe(first);
    act(() => {
      second.serverOpen();
      second.serverSend(snapshot(70, [run("ptq_int8"), run("ptq_int4")]));
    });
    expect(screen.queryByTestId("reconnecting")).not.toBeInTheDocument();
    expect(screen.getByRole("progressbar", { name: "Overall progress" })).toHaveAttribute("aria-valuenow", "70");

    act(() => second.serverSend({ type: "experiment_completed", experiment_id: "e1" }));
    expect(screen.getByText(/All techniques finished/)).toBeInTheDocument();
    act(() => vi.advanceTimersByTime(1500));
    expect(screen.getByText("results page")).toBeInTheDocument();
  });

  it("says so when the experiment does not exist", () => {
    renderPage();
    act(() => FakeWebSocket.latest().serverClose(4404));
    expect(screen.getByRole("alert")).toHaveTextContent("Experiment not found");
  });
});
