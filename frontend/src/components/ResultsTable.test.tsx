import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { catalog } from "../test/catalog";
import { recommendation, report } from "../test/fixtures";
import { ResultsTable } from "./ResultsTable";

function renderTable(rec = recommendation()) {
  const r = report();
  return render(
    <ResultsTable
      runs={r.runs ?? []}
      baseline={r.baseline}
      recommendation={rec}
      device="rpi4"
      deviceTitle="Raspberry Pi 4 Model B"
      techniques={catalog.techniques}
    />,
  );
}

const bodyRows = () => screen.getAllByRole("row").slice(2); // header and the original model

describe("ResultsTable", () => {
  it("marks a host latency that stayed noisy, and only that one", () => {
    const r = report();
    const runs = (r.runs ?? []).map((run) =>
      run.technique === "ptq_int4" && run.latency_ms ? { ...run, latency_ms: { ...run.latency_ms, host_p90: 1.0, noisy: true } } : run,
    );
    render(
      <ResultsTable runs={runs} baseline={r.baseline} recommendation={recommendation()} device="rpi4"
        deviceTitle="Raspberry Pi 4 Model B" techniques={catalog.techniques} />,
    );
    const marks = screen.getAllByText("rough");
    expect(marks).toHaveLength(1);
    const mark = marks[0] as HTMLElement;
    expect(mark.closest("tr")).toHaveTextContent(/INT4/);
    expect(mark).toHaveAttribute("title", "p90 was 5.0x the median while timed");
  });

  it("shows a latency measured on a board under the estimate, with the board's name and the day", () => {
    const r = report();
    const board = {
      board: "Raspberry Pi 4 Model B Rev 1.4", device: "rpi4", is_raspberry_pi: true, latency_ms: 7.25,
      latency_p90_ms: 7.9, noisy: false, threads: 4, runtime: "executorch-xnnpack", measured_at: "2026-12-04T18:30:00Z",
    };
    const runs = (r.runs ?? []).map((run) => (run.technique === "ptq_int8" ? { ...run, board_latency: board } : run));
    render(
      <ResultsTable runs={runs} baseline={r.baseline} recommendation={recommendation()} device="rpi4"
        deviceTitle="Raspberry Pi 4 Model B" techniques={catalog.techniques} />,
    );
    const lines = screen.getAllByTestId("board-measurement");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toHaveTextContent("measured on Raspberry Pi 4 Model B Rev 1.4 2026-12-04");
    expect(lines[0]?.closest("tr")).toHaveTextContent(/Post-training INT8/);
  });

  it("shows the original model's board measurement in its own row, not in a technique's", () => {
    const r = report();
    const board = {
      board: "Raspberry Pi 4 Model B Rev 1.4", device: "rpi4", is_raspberry_pi: true, latency_ms: 31.5,
      latency_p90_ms: 33.0, noisy: false, threads: 4, runtime: "executorch-xnnpack", measured_at: "2026-12-05T01:00:00Z",
    };
    const baseline = r.baseline ? { ...r.baseline, board_latency: board } : r.baseline;
    render(
      <ResultsTable runs={r.runs ?? []} baseline={baseline} recommendation={recommendation()} device="rpi4"
        deviceTitle="Raspberry Pi 4 Model B" techniques={catalog.techniques} />,
    );
    const lines = screen.getAllByTestId("board-measurement");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toHaveTextContent("measured on Raspberry Pi 4 Model B Rev 1.4 2026-12-05");
    expect(lines[0]?.closest("tr")).toHaveTextContent(/Original model/);
  });

  it("offers the original model's download in its own row, and completed runs' in theirs", () => {
    const r = report();
    render(
      <ResultsTable runs={r.runs ?? []} baseline={r.baseline} recommendation={recommendation()} device="rpi4"
        deviceTitle="Raspberry Pi 4 Model B" techniques={catalog.techniques}
        renderActions={(run) => <button type="button">get {run.technique}</button>}
        renderBaselineActions={() => <button type="button">get original</button>} />,
    );
    // Text queries, not role queries: the table is large and role queries are slow on a loaded machine.
    const original = screen.getByText("Original model").closest("tr") as HTMLElement;
    expect(within(original).getByText("get original").tagName).toBe("BUTTON");
    const completed = (r.runs ?? []).filter((run) => run.status === "completed");
    expect(screen.getAllByText(/^get /)).toHaveLength(completed.length + 1);
  });

  it("highlights the recommended row and only it", () => {
    renderTable();
    const recommended = screen.getByRole("rowheader", { name: /Post-training INT8/ }).closest("tr");
    expect(recommended).toHaveAttribute("data-recommended", "true");
    expect(within(recommended as HTMLElement).getByText("Recommended")).toBeInTheDocument();
    expect(document.querySelectorAll('tr[data-recommended="true"]')).toHaveLength(1);
  });

  it("follows a recomputed recommendation", () => {
    const { rerender } = renderTable();
    const r = report();
    rerender(
      <ResultsTable
        runs={r.runs ?? []}
        baseline={r.baseline}
        recommendation={recommendation({ technique: "ptq_int4" })}
        device="rpi4"
        deviceTitle="Raspberry Pi 4 Model B"
        techniques={catalog.techniques}
      />,
    );
    const highlighted = document.querySelector('tr[data-recommended="true"]');
    expect(within(highlighted as HTMLElement).getByRole("rowheader")).toHaveTextContent("Post-training INT4 weights");
  });

  it("colours each judged cell green or red and says so in words", () => {
    renderTable();
    const int8 = screen.getByRole("rowheader", { name: /Post-training INT8/ }).closest("tr") as HTMLElement;
    const int4 = screen.getByRole("rowheader", { name: /Post-training INT4/ }).closest("tr") as HTMLElement;
    const int8Drop = int8.querySelector('[data-constraint]') as HTMLElement;
    const int4Drop = int4.querySelector('[data-constraint]') as HTMLElement;
    expect(int8Drop).toHaveAttribute("data-constraint", "met");
    expect(int8Drop).toHaveClass("bg-emerald-100");
    expect(int8Drop).toHaveTextContent("meets your limit");
    expect(int4Drop).toHaveAttribute("data-constraint", "missed");
    expect(int4Drop).toHaveClass("bg-red-100");
    expect(int4Drop).toHaveTextContent("misses your limit");
    // Only the judged column (accuracy drop) is coloured.
    expect(int8.querySelectorAll("[data-constraint]")).toHaveLength(1);
  });

  it("sorts by a column both ways, failed runs last", async () => {
    const user = userEvent.setup();
    renderTable();
    const names = () => bodyRows().map((row) => within(row).getByRole("rowheader").textContent);
    await user.click(screen.getByRole("button", { name: /^Size/ }));
    expect(screen.getByRole("columnheader", { name: /^Size/ })).toHaveAttribute("aria-sort", "ascending");
    expect(names()[0]).toMatch(/INT4/);
    expect(names().at(-1)).toMatch(/Knowledge distillation/);
    await user.click(screen.getByRole("button", { name: /^Size/ }));
    expect(screen.getByRole("columnheader", { name: /^Size/ })).toHaveAttribute("aria-sort", "descending");
    expect(names()[0]).toMatch(/Structured pruning/);
    expect(names().at(-1)).toMatch(/Knowledge distillation/);
  });

  it("says when a result does not fit the board and shows why a run failed", () => {
    render(
      <ResultsTable
        runs={report().runs ?? []}
        baseline={null}
        recommendation={null}
        device="rpi_zero_2w"
        deviceTitle="Raspberry Pi Zero 2 W"
        techniques={catalog.techniques}
      />,
    );
    const int4 = screen.getByRole("rowheader", { name: /Post-training INT4/ }).closest("tr") as HTMLElement;
    expect(within(int4).getByText("does not fit")).toBeInTheDocument();
    expect(screen.getByText("The student did not converge.")).toBeInTheDocument();
  });

  it("shows the estimate corrected by the user's own boards under it, only where there is one", () => {
    const r = report();
    const runs = (r.runs ?? []).map((run) => {
      const estimate = run.estimates?.rpi4;
      return run.technique === "ptq_int8" && estimate
        ? { ...run, estimates: { ...run.estimates, rpi4: { ...estimate, corrected_latency_ms: 4.5 } } }
        : run;
    });
    render(
      <ResultsTable runs={runs} baseline={r.baseline} recommendation={recommendation()} device="rpi4"
        deviceTitle="Raspberry Pi 4 Model B" techniques={catalog.techniques} />,
    );
    const lines = screen.getAllByTestId("board-corrected");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toHaveTextContent("4.50 ms by your boards");
    expect(lines[0]?.closest("tr")).toHaveTextContent(/Post-training INT8/);
  });
});
