import { render, screen, within } from "@testing-library/react";
import { MemoryRouter } from "react-router";
import { afterEach, describe, expect, it, vi } from "vitest";
import * as client from "../api/client";
import type { ExperimentPublic } from "../api/types";
import { CatalogContextProvider } from "../hooks/useCatalog";
import { catalog } from "../test/catalog";
import { HomePage } from "./HomePage";

vi.mock("../api/client", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../api/client")>();
  return { ...actual, listExperiments: vi.fn(), getResults: vi.fn(), getExperiment: vi.fn() };
});

function experiment(overrides: Partial<ExperimentPublic>): ExperimentPublic {
  return {
    id: "e0000000",
    name: "",
    framework: "pytorch",
    dataset: "digits",
    device: "rpi4",
    goal: "balanced",
    constraints: {},
    techniques: ["ptq_int8", "ptq_int4"],
    arch: "resnet18",
    epochs: null,
    technique_configs: {},
    status: "completed",
    error: null,
    created_at: "2026-11-29T09:00:00Z",
    updated_at: "2026-11-29T09:10:00Z",
    started_at: "2026-11-29T09:01:00Z",
    finished_at: "2026-11-29T09:10:00Z",
    files: [],
    recommended: null,
    ...overrides,
  };
}

function renderHome() {
  return render(
    <MemoryRouter>
      <CatalogContextProvider value={catalog}>
        <HomePage />
      </CatalogContextProvider>
    </MemoryRouter>,
  );
}

async function bestResultOf(name: string): Promise<HTMLElement> {
  const row = (await screen.findByText(name)).closest("tr");
  expect(row).not.toBeNull();
  const cells = within(row as HTMLElement).getAllByRole("cell");
  const column = screen.getAllByRole("columnheader").findIndex((h) => h.textContent === "Best result");
  const cell = cells[column];
  if (!cell) throw new Error(`no "Best result" cell in the row of ${name}`);
  return cell;
}

describe("HomePage", () => {
  afterEach(() => vi.clearAllMocks());

  it("shows each row's recommended result from the list alone, with no request per row", async () => {
    const items = [
      experiment({
        id: "e1000000",
        name: "quantized",
        recommended: { technique: "ptq_int4", accuracy: 0.953, size_bytes: 600_000, latency_host_ms: 1.25 },
      }),
      experiment({
        id: "e2000000",
        name: "kept as is",
        recommended: { technique: "baseline", accuracy: 0.97, size_bytes: 4_000_000, latency_host_ms: 2 },
      }),
      experiment({ id: "e3000000", name: "nothing fits" }),
      experiment({
        id: "e4000000",
        name: "resumed",
        status: "running",
        recommended: { technique: "ptq_int8", accuracy: 0.96, size_bytes: 1_000_000, latency_host_ms: 1 },
      }),
    ];
    vi.mocked(client.listExperiments).mockResolvedValue({ items, total: items.length, limit: 100, offset: 0 });
    renderHome();

    const quantized = await bestResultOf("quantized");
    expect(quantized).toHaveTextContent("Post-training INT4 weights");
    expect(quantized).toHaveTextContent("95.3 % · 600.0 kB · 1.25 ms on this host");
    expect(await bestResultOf("kept as is")).toHaveTextContent("Original model97.0 % · 4.00 MB · 2.00 ms");
    expect(await bestResultOf("nothing fits")).toHaveTextContent(/^none$/);
    expect(await bestResultOf("resumed")).toHaveTextContent(/^—$/); // its recommendation may still change

    expect(client.listExperiments).toHaveBeenCalledTimes(1);
    expect(client.getResults).not.toHaveBeenCalled();
    expect(client.getExperiment).not.toHaveBeenCalled();
  });
});
