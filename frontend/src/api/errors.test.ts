import { describe, expect, it } from "vitest";
import { messageFromBody } from "./errors";
import { filenameFromDisposition } from "./transfer";

describe("server errors in plain words", () => {
  it("uses the service's own sentence", () => {
    expect(messageFromBody(400, { detail: "The file is not a model file.", field: "file" })).toBe("The file is not a model file.");
  });

  it("turns FastAPI's validation list into field: message", () => {
    const body = { detail: [{ loc: ["body", "constraints", "min_accuracy"], msg: "Input should be less than or equal to 1" }] };
    expect(messageFromBody(422, body)).toBe("constraints.min_accuracy: Input should be less than or equal to 1");
  });

  it("never shows a bare object or nothing", () => {
    expect(messageFromBody(502, "<html>Bad gateway</html>".repeat(30))).toMatch(/HTTP 502/);
    expect(messageFromBody(0, null)).toMatch(/could not be reached/);
    expect(messageFromBody(404, {})).toMatch(/Not found/);
  });
});

describe("download file names", () => {
  it("reads both Content-Disposition forms", () => {
    expect(filenameFromDisposition('attachment; filename="demo-1a2b3c4d-ptq_int8.pte"', "x")).toBe("demo-1a2b3c4d-ptq_int8.pte");
    expect(filenameFromDisposition("attachment; filename*=utf-8''d%C3%A9mo.tflite", "x")).toBe("démo.tflite");
    expect(filenameFromDisposition(null, "fallback.pte")).toBe("fallback.pte");
  });
});
