// @vitest-environment node
/// <reference types="node" />
/**
 * The web app's types must be the service's: the WebSocket messages, the catalog and every API body are pydantic
 * models on the server, exported to `openapi.json` (checked against the models by
 * tests/service/test_app.py::test_committed_openapi_schema_matches_the_service) and generated into
 * `schema.gen.ts` by `npm run gen:api`. This test regenerates the TypeScript into a temporary file and fails when it
 * differs from the committed one, so a model changed on one side cannot go unnoticed on the other.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(__dirname, "../..");

describe("generated API types", () => {
  it("match frontend/openapi.json (run `npm run gen:api` after exporting the schema)", () => {
    const dir = mkdtempSync(join(tmpdir(), "edgeopt-gen-"));
    try {
      const out = join(dir, "schema.gen.ts");
      const cli = join(root, "node_modules", "openapi-typescript", "bin", "cli.js");
      execFileSync(process.execPath, [cli, join(root, "openapi.json"), "-o", out], { cwd: root, stdio: "pipe" });
      const committed = readFileSync(join(root, "src", "api", "schema.gen.ts"), "utf-8");
      expect(committed === readFileSync(out, "utf-8"), "src/api/schema.gen.ts is stale: run `npm run gen:api`").toBe(
        true,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
