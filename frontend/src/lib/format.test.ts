import { describe, expect, it } from "vitest";
import { formatAccuracyChange } from "./format";

describe("formatAccuracyChange", () => {
  it("shows a loss with a minus sign and a gain with a plus, in points", () => {
    expect(formatAccuracyChange(0.014)).toBe("−1.4 pt");
    expect(formatAccuracyChange(-0.003)).toBe("+0.3 pt");
    expect(formatAccuracyChange(0.0001)).toBe("0.0 pt");
    expect(formatAccuracyChange(null)).toBe("—");
  });
});
