import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { getApiKey, setApiKey } from "../api/auth";
import { ApiError } from "../api/errors";
import { experimentSocketUrl } from "../api/ws";
import { catalog } from "../test/catalog";
import { CatalogProvider, useCatalog } from "./useCatalog";

function Boards() {
  return <p>{useCatalog().devices.map((d) => d.title).join(", ")}</p>;
}

describe("CatalogProvider", () => {
  afterEach(() => setApiKey(null));

  it("shows an error with a retry when the service cannot be reached", async () => {
    const loader = vi
      .fn()
      .mockRejectedValueOnce(new ApiError(0, "The EdgeOpt service could not be reached."))
      .mockResolvedValueOnce(catalog);
    render(
      <CatalogProvider loader={loader}>
        <Boards />
      </CatalogProvider>,
    );
    expect(await screen.findByText("The EdgeOpt service could not be reached.")).toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: "Try again" }));
    expect(await screen.findByText(/Raspberry Pi 4 Model B, Raspberry Pi 5/)).toBeInTheDocument();
  });

  it("asks for the API key on 401 and uses it for the WebSocket too", async () => {
    const loader = vi
      .fn()
      .mockRejectedValueOnce(new ApiError(401, "Missing or wrong API key: send it in the X-API-Key header."))
      .mockResolvedValueOnce(catalog);
    render(
      <CatalogProvider loader={loader}>
        <Boards />
      </CatalogProvider>,
    );
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Continue" }));
    expect(screen.getByText(/Enter the API key/)).toBeInTheDocument();
    await user.type(screen.getByLabelText("API key"), "s3cret");
    await user.click(screen.getByRole("button", { name: "Continue" }));
    expect(await screen.findByText(/Raspberry Pi 5/)).toBeInTheDocument();
    expect(getApiKey()).toBe("s3cret");
    expect(experimentSocketUrl("abc", new URL("https://edge.example/x"))).toBe(
      "wss://edge.example/ws/experiments/abc?api_key=s3cret",
    );
  });
});
