import { fireEvent, render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CatalogContextProvider } from "../hooks/useCatalog";
import { catalog } from "../test/catalog";
import { SetupPage } from "./SetupPage";

function renderSetup() {
  return render(
    <MemoryRouter>
      <CatalogContextProvider value={catalog}>
        <SetupPage />
      </CatalogContextProvider>
    </MemoryRouter>,
  );
}

describe("SetupPage validation", () => {
  afterEach(() => vi.restoreAllMocks());

  it("shows inline messages and sends nothing when the form is incomplete", async () => {
    const fetchSpy = vi.spyOn(globalThis, "fetch");
    const user = userEvent.setup();
    renderSetup();
    await user.type(screen.getByRole("textbox", { name: "Maximum size (MB)" }), "-1");
    await user.click(screen.getByRole("button", { name: "Start optimization" }));

    expect(await screen.findByText(/fields need attention/)).toBeInTheDocument();
    expect(screen.getByText(/Choose a model file to upload/)).toBeInTheDocument();
    const size = screen.getByRole("textbox", { name: "Maximum size (MB)" });
    expect(size).toHaveAttribute("aria-invalid", "true");
    expect(size).toHaveAccessibleDescription("Maximum size must be greater than 0.");
    expect(fetchSpy).not.toHaveBeenCalled();

    // Fixing the field clears its message at once.
    await user.clear(size);
    await user.type(size, "5");
    expect(size).toHaveAttribute("aria-invalid", "false");
    expect(screen.queryByText("Maximum size must be greater than 0.")).not.toBeInTheDocument();
  });

  it("lists every technique, board and goal from the catalog, all techniques chosen by default", () => {
    renderSetup();
    for (const technique of catalog.techniques) {
      expect(screen.getByRole("checkbox", { name: technique.title })).toBeChecked();
    }
    for (const device of catalog.devices) {
      expect(screen.getByRole("radio", { name: new RegExp(device.title) })).toBeInTheDocument();
    }
    const goal = screen.getByRole("combobox", { name: "Goal" });
    expect(within(goal).getAllByRole("option").map((o) => o.textContent)).toEqual(catalog.goals.map((g) => g.title));
    expect(goal).toHaveValue("balanced");
  });

  it("warns about a TensorFlow file chosen for PyTorch", async () => {
    const user = userEvent.setup();
    renderSetup();
    await user.upload(screen.getByLabelText("Model file"), new File(["x"], "model.keras"));
    await user.click(screen.getByRole("button", { name: "Start optimization" }));
    expect(await screen.findByText(/looks like a TensorFlow model/)).toBeInTheDocument();
    await user.click(screen.getByRole("radio", { name: "TensorFlow / Keras" }));
    expect(screen.queryByText(/looks like a TensorFlow model/)).not.toBeInTheDocument();
  });

  it("takes a model file dropped on the upload area", () => {
    renderSetup();
    const file = new File([new Uint8Array(2048)], "dropped.pt2");
    fireEvent.drop(screen.getByTestId("model-dropzone"), { dataTransfer: { files: [file] } });
    expect(screen.getByText(/Selected:/)).toHaveTextContent("Selected: dropped.pt2 (2.0 kB)");
  });
});
