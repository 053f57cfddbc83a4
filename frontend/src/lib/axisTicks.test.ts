import { describe, expect, it } from "vitest";
import { axisTicks } from "./axisTicks";

describe("axisTicks", () => {
  it("covers the data on an even, round step with labels of one length", () => {
    const { ticks, decimals } = axisTicks([0.22, 0.41, 1.57]);
    expect(ticks).toEqual([0, 0.5, 1, 1.5, 2]);
    expect(decimals).toBe(1);
  });

  it("keeps accuracy at or below 100 % and still covers a perfect score", () => {
    const { ticks, domain } = axisTicks([97.3, 99.1, 100], { lower: 0, upper: 100 });
    expect(domain[1]).toBe(100);
    expect(ticks[0]).toBeLessThanOrEqual(97.3);
    const steps = ticks.slice(1).map((t, i) => +(t - (ticks[i] as number)).toFixed(9));
    expect(new Set(steps).size).toBe(1);
  });

  it("puts a lone value inside the axis", () => {
    const { domain } = axisTicks([100], { upper: 100 });
    expect(domain[0]).toBeLessThan(100);
    expect(domain[1]).toBe(100);
  });

  it("gives a quarter step two decimals", () => {
    expect(axisTicks([0, 1], { target: 5 })).toMatchObject({ ticks: [0, 0.25, 0.5, 0.75, 1], decimals: 2 });
  });
});
