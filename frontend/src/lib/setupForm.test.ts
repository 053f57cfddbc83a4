import { describe, expect, it } from "vitest";
import { catalog } from "../test/catalog";
import { constraintsFromInputs, initialSetupValues, inputsFromConstraints, toCreateBody, validateSetup } from "./setupForm";

const file = (name: string, bytes = 10) => new File([new Uint8Array(bytes)], name);

describe("setup form rules", () => {
  it("asks for a model file first", () => {
    const errors = validateSetup(initialSetupValues(catalog), catalog);
    expect(errors.modelFile).toMatch(/Choose a model file/);
  });

  it("accepts a complete form", () => {
    const values = { ...initialSetupValues(catalog), modelFile: file("net.pt2") };
    const errors = validateSetup(values, catalog);
    expect([errors.inputSize, errors.mean, errors.std]).toEqual([undefined, undefined, undefined]);
  });

  it("refuses a file of the other framework and an empty file", () => {
    const base = initialSetupValues(catalog);
    expect(validateSetup({ ...base, modelFile: file("model.keras") }, catalog).modelFile).toMatch(/TensorFlow/);
    expect(validateSetup({ ...base, modelFile: file("model.pt2", 0) }, catalog).modelFile).toMatch(/empty/);
  });

  it("checks limits: numbers, ranges, positivity", () => {
    const base = { ...initialSetupValues(catalog), modelFile: file("net.pt2") };
    const errors = validateSetup(
      { ...base, constraints: { min_accuracy: "120", max_accuracy_drop: "abc", max_size_mb: "0", max_latency_ms: "-3" } },
      catalog,
    );
    expect(errors.min_accuracy).toMatch(/between 0 and 100/);
    expect(errors.max_accuracy_drop).toMatch(/must be a number/);
    expect(errors.max_size_mb).toMatch(/greater than 0/);
    expect(errors.max_latency_ms).toMatch(/greater than 0/);
  });

  it("needs at least one technique, and a dataset archive when custom", () => {
    const base = { ...initialSetupValues(catalog), modelFile: file("net.pt2") };
    expect(validateSetup({ ...base, techniques: [] }, catalog).techniques).toMatch(/at least one/);
    expect(validateSetup({ ...base, datasetMode: "custom" }, catalog).datasetFile).toMatch(/archive/);
    expect(validateSetup({ ...base, datasetMode: "custom", datasetFile: file("d.csv") }, catalog).datasetFile).toMatch(/not a .npz/);
  });

  it("sends accuracy limits as fractions and leaves blanks out", () => {
    expect(constraintsFromInputs({ min_accuracy: "90", max_accuracy_drop: "1,5", max_size_mb: "", max_latency_ms: "20" })).toEqual({
      min_accuracy: 0.9,
      max_accuracy_drop: 0.015,
      max_latency_ms: 20,
    });
    expect(inputsFromConstraints({ max_accuracy_drop: 0.02, max_size_mb: 5 })).toEqual({
      min_accuracy: "",
      max_accuracy_drop: "2",
      max_size_mb: "5",
      max_latency_ms: "",
    });
  });

  it("sends the search time in seconds, and refuses a time that is not a positive number of minutes", () => {
    const values = { ...initialSetupValues(catalog), timeBudgetMin: "2.5" };
    expect(toCreateBody(values, catalog).time_budget_s).toBe(150);
    expect(toCreateBody(initialSetupValues(catalog), catalog).time_budget_s).toBeNull();
    for (const bad of ["0", "-3", "soon", "20000"]) {
      expect(validateSetup({ ...values, timeBudgetMin: bad }, catalog).timeBudgetMin).toMatch(/minutes above 0 and at most 10080/);
    }
  });

  it("builds the API body: architecture instead of a file, epochs as a number", () => {
    const values = { ...initialSetupValues(catalog), source: "architecture" as const, arch: "resnet18", epochs: "2" };
    const body = toCreateBody(values, catalog);
    expect(body).toMatchObject({ arch: "resnet18", epochs: 2, framework: "pytorch", device: "rpi4", dataset: "digits" });
    expect(body.techniques).toEqual(["ptq_int8", "ptq_int4", "prune_structured", "distillation"]);
  });
});

describe("declared model input", () => {
  const base = initialSetupValues(catalog);

  it("sends nothing while the model's own convention is kept", () => {
    expect(toCreateBody(base, catalog).preprocessing).toBeNull();
  });

  it("sends a preset, a size, the order and the range as the API spells them", () => {
    const values = { ...base, preprocessing: { ...base.preprocessing, preset: "imagenet", inputSize: "96x128", channelOrder: "bgr" as const } };
    const errors = validateSetup(values, catalog);
    expect([errors.inputSize, errors.mean, errors.std]).toEqual([undefined, undefined, undefined]);
    expect(toCreateBody(values, catalog).preprocessing).toEqual({
      preset: "imagenet", input_size: [96, 128], channel_order: "bgr", value_range: "0-1", mean: null, std: null,
    });
  });

  it("checks custom statistics and sizes before sending", () => {
    const bad = { ...base, preprocessing: { ...base.preprocessing, preset: "custom", inputSize: "224", mean: "0.5, x", std: "0.2,0.2" } };
    const errors = validateSetup(bad, catalog);
    expect(errors.inputSize).toMatch(/224x224/);
    expect(errors.mean).toMatch(/1 or 3 numbers/);
    const mismatched = { ...base, preprocessing: { ...base.preprocessing, preset: "custom", mean: "0.5,0.5,0.5", std: "0.2" } };
    expect(validateSetup(mismatched, catalog).std).toMatch(/as many std values/);
    const good = { ...base, preprocessing: { ...base.preprocessing, preset: "custom", mean: "127.5", std: "127.5", valueRange: "0-255" as const } };
    expect(toCreateBody(good, catalog).preprocessing).toMatchObject({ preset: "custom", mean: [127.5], std: [127.5], value_range: "0-255" });
  });
});
