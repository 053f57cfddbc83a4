/** Report-shaped data for component tests, typed by the generated schema so a contract change breaks the build. */
import type { DeviceEstimate, Recommendation, Report, RunResult } from "../api/types";

export function estimate(latency: number, overrides: Partial<DeviceEstimate> = {}): DeviceEstimate {
  return {
    latency_ms: latency,
    memory_mb: 3.2,
    power_w: 3.1,
    energy_mj: latency * 3.1,
    fits: true,
    runtime: "xnnpack",
    threads: 4,
    ...overrides,
  };
}

export function run(technique: string, overrides: Partial<RunResult> = {}): RunResult {
  return {
    technique,
    status: "completed",
    error: null,
    accuracy: 0.95,
    accuracy_drop: 0.01,
    size_bytes: 250_000,
    compressed_size_bytes: 200_000,
    compression_ratio: 4,
    params: 100_000,
    flops: 2_000_000,
    sparsity: 0,
    latency_ms: { host: 0.2, host_p90: 0.25, method: "interleaved", noisy: false },
    estimates: { rpi4: estimate(2.0), rpi5: estimate(0.9), rpi_zero_2w: estimate(6.5) },
    artifact: `${technique}.pte`,
    formats: {},
    precision: "int8",
    duration_s: 3,
    config: {},
    notes: "",
    ...overrides,
  };
}

export function recommendation(overrides: Partial<Recommendation> = {}): Recommendation {
  return {
    technique: "ptq_int8",
    goal: "balanced",
    reasoning: "Post-training INT8 is 4.0x smaller and 2.1x faster on the Raspberry Pi 4 for 1.0 points of accuracy.",
    pros: ["4.0x smaller file", "2.1x faster on the board"],
    cons: ["1.0 points less accurate"],
    ranking: ["ptq_int8", "prune_structured", "ptq_int4"],
    pareto: ["ptq_int8", "ptq_int4"],
    constraints: {
      ptq_int8: { max_accuracy_drop: true },
      ptq_int4: { max_accuracy_drop: false },
      prune_structured: { max_accuracy_drop: true },
    },
    all_constraints_met: true,
    run_pros_cons: {},
    ...overrides,
  };
}

export function report(): Report {
  return {
    experiment: {
      id: "exp1",
      framework: "pytorch",
      dataset: "digits",
      device: "rpi4",
      goal: "balanced",
      constraints: { max_accuracy_drop: 0.02 },
    },
    baseline: {
      accuracy: 0.96,
      size_bytes: 1_000_000,
      compressed_size_bytes: 900_000,
      params: 100_000,
      flops: 2_000_000,
      sparsity: 0,
      latency_ms: { host: 0.5, host_p90: 0.6, method: "interleaved", noisy: false },
      artifact: "baseline.pte",
      estimates: { rpi4: estimate(4.2), rpi5: estimate(1.9), rpi_zero_2w: estimate(13, { fits: true }) },
      precision: "fp32",
      config: {},
      notes: "",
    },
    runs: [
      run("ptq_int8", { accuracy: 0.95, accuracy_drop: 0.01 }),
      run("ptq_int4", {
        accuracy: 0.9,
        accuracy_drop: 0.06,
        size_bytes: 130_000,
        compression_ratio: 7.7,
        estimates: { rpi4: estimate(2.5), rpi5: estimate(1.1), rpi_zero_2w: estimate(8, { fits: false }) },
      }),
      run("prune_structured", { accuracy: 0.955, accuracy_drop: 0.005, size_bytes: 500_000, compression_ratio: 2 }),
      run("distillation", {
        status: "failed",
        error: "The student did not converge.",
        accuracy: null,
        accuracy_drop: null,
        size_bytes: null,
        compressed_size_bytes: null,
        compression_ratio: null,
        latency_ms: null,
        estimates: {},
        artifact: null,
      }),
    ],
    recommendation: recommendation(),
    lineage: {},
  };
}
