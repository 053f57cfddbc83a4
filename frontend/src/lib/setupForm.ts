/**
 * The setup form's values, their validation and their translation into the API's `ExperimentCreate`.
 *
 * Pure functions so the rules are tested directly and the form shows every problem inline before anything is
 * sent. Inputs hold strings (what the user typed); percentages are shown as percent and sent as fractions, the
 * unit of the API (docs/architecture.md section 2).
 */
import { supportsFramework, type Catalog } from "../api/catalog";
import type { ExperimentCreate, TechniqueName } from "../api/types";

export type ModelSource = "upload" | "architecture";
export type DatasetMode = "preset" | "custom";

export interface ConstraintInputs {
  min_accuracy: string;
  max_accuracy_drop: string;
  max_size_mb: string;
  max_latency_ms: string;
}

/** The model's input convention as typed; preset "model" sends nothing (the model's own convention). */
export interface PreprocessingInputs {
  preset: string;
  inputSize: string;
  channelOrder: "rgb" | "bgr";
  valueRange: "0-1" | "0-255";
  mean: string;
  std: string;
}

export const MODEL_DEFAULT_PREPROCESSING: PreprocessingInputs = {
  preset: "model",
  inputSize: "",
  channelOrder: "rgb",
  valueRange: "0-1",
  mean: "",
  std: "",
};

export interface SetupValues {
  name: string;
  source: ModelSource;
  modelFile: File | null;
  arch: string;
  framework: string;
  device: string;
  datasetMode: DatasetMode;
  dataset: string;
  datasetFile: File | null;
  goal: string;
  constraints: ConstraintInputs;
  techniques: string[];
  /** Fine-tuning epochs; blank keeps each technique's default. */
  epochs: string;
  /** Minutes all strength searches may take together; blank: about as long as the techniques themselves. */
  timeBudgetMin: string;
  preprocessing: PreprocessingInputs;
}

export type SetupField =
  | "name"
  | "modelFile"
  | "arch"
  | "framework"
  | "device"
  | "dataset"
  | "datasetFile"
  | "goal"
  | "techniques"
  | "epochs"
  | "timeBudgetMin"
  | "inputSize"
  | "mean"
  | "std"
  | keyof ConstraintInputs;

export type SetupErrors = Partial<Record<SetupField, string>>;

export const EMPTY_CONSTRAINTS: ConstraintInputs = {
  min_accuracy: "",
  max_accuracy_drop: "",
  max_size_mb: "",
  max_latency_ms: "",
};

export function initialSetupValues(catalog: Catalog): SetupValues {
  const firstAvailable = catalog.datasets.find((d) => d.always_available) ?? catalog.datasets[0];
  return {
    name: "",
    source: "upload",
    modelFile: null,
    arch: catalog.architectures[0]?.name ?? "",
    framework: catalog.frameworks[0] ?? "",
    device: catalog.devices[0]?.name ?? "",
    datasetMode: "preset",
    dataset: firstAvailable?.name ?? "",
    datasetFile: null,
    goal: catalog.goals.find((g) => g.name === "balanced")?.name ?? catalog.goals[0]?.name ?? "",
    constraints: { ...EMPTY_CONSTRAINTS },
    techniques: catalog.techniques.map((t) => t.name),
    epochs: "",
    timeBudgetMin: "",
    preprocessing: { ...MODEL_DEFAULT_PREPROCESSING },
  };
}

/** File name endings that belong to one framework only: picking such a file for the other is surely a mistake. */
const FRAMEWORK_EXTENSIONS: Record<string, string[]> = {
  pytorch: [".pt2", ".pt", ".pth"],
  tensorflow: [".keras", ".h5", ".hdf5"],
};
export const MODEL_ACCEPT = ".pt2,.pt,.pth,.keras,.h5,.hdf5,.zip";
export const DATASET_ACCEPT = ".npz,.zip";
const DATASET_EXTENSIONS = [".npz", ".zip"];

function extensionOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot >= 0 ? name.slice(dot).toLowerCase() : "";
}

export function frameworkOfFileName(name: string): string | null {
  const ext = extensionOf(name);
  for (const [framework, extensions] of Object.entries(FRAMEWORK_EXTENSIONS)) {
    if (extensions.includes(ext)) return framework;
  }
  return null;
}

function parseNumber(text: string): number | null | "invalid" {
  const trimmed = text.trim().replace(",", ".");
  if (!trimmed) return null;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : "invalid";
}

function checkPercent(text: string, label: string): string | undefined {
  const value = parseNumber(text);
  if (value === null) return undefined;
  if (value === "invalid") return `${label} must be a number, for example 90.`;
  if (value < 0 || value > 100) return `${label} must be between 0 and 100 %.`;
  return undefined;
}

function checkPositive(text: string, label: string, example: string): string | undefined {
  const value = parseNumber(text);
  if (value === null) return undefined;
  if (value === "invalid") return `${label} must be a number, for example ${example}.`;
  if (value <= 0) return `${label} must be greater than 0.`;
  return undefined;
}

export function validateSetup(values: SetupValues, catalog: Catalog): SetupErrors {
  const errors: SetupErrors = {};
  if (values.name.length > 200) errors.name = "Keep the name under 200 characters.";
  if (!(catalog.frameworks as readonly string[]).includes(values.framework)) errors.framework = "Choose the framework the model was made with.";

  if (values.source === "upload") {
    const file = values.modelFile;
    if (!file) {
      errors.modelFile = "Choose a model file to upload, or use a pretrained architecture instead.";
    } else if (file.size === 0) {
      errors.modelFile = `${file.name} is empty; choose the saved model file.`;
    } else {
      const fileFramework = frameworkOfFileName(file.name);
      if (fileFramework && values.framework && fileFramework !== values.framework) {
        const other = fileFramework === "pytorch" ? "PyTorch" : "TensorFlow";
        errors.modelFile = `${file.name} looks like a ${other} model; choose ${other} as the framework or another file.`;
      }
    }
  } else if (!catalog.architectures.some((a) => a.name === values.arch)) {
    errors.arch = "Choose one of the pretrained architectures.";
  }

  if (!catalog.devices.some((d) => d.name === values.device)) errors.device = "Choose the board you will deploy to.";
  if (values.datasetMode === "preset") {
    if (!catalog.datasets.some((d) => d.name === values.dataset)) errors.dataset = "Choose a dataset.";
  } else if (!values.datasetFile) {
    errors.datasetFile = "Choose a dataset archive (.npz or .zip) to upload.";
  } else if (!DATASET_EXTENSIONS.includes(extensionOf(values.datasetFile.name))) {
    errors.datasetFile = `${values.datasetFile.name} is not a .npz or .zip archive.`;
  }
  if (!catalog.goals.some((g) => g.name === values.goal)) errors.goal = "Choose what matters most.";

  const c = values.constraints;
  const minAccuracy = checkPercent(c.min_accuracy, "Minimum accuracy");
  if (minAccuracy) errors.min_accuracy = minAccuracy;
  const maxDrop = checkPercent(c.max_accuracy_drop, "Maximum accuracy drop");
  if (maxDrop) errors.max_accuracy_drop = maxDrop;
  const maxSize = checkPositive(c.max_size_mb, "Maximum size", "5");
  if (maxSize) errors.max_size_mb = maxSize;
  const maxLatency = checkPositive(c.max_latency_ms, "Maximum latency", "50");
  if (maxLatency) errors.max_latency_ms = maxLatency;

  const epochs = parseNumber(values.epochs);
  const maxEpochs = catalog.limits.max_epochs;
  if (epochs === "invalid" || (typeof epochs === "number" && (!Number.isInteger(epochs) || epochs < 0 || epochs > maxEpochs))) {
    errors.epochs = `Epochs must be a whole number from 0 to ${maxEpochs}, or blank for the defaults.`;
  }
  const budget = parseNumber(values.timeBudgetMin);
  const maxMinutes = catalog.limits.max_time_budget_s / 60;
  if (budget === "invalid" || (typeof budget === "number" && (budget <= 0 || budget > maxMinutes))) {
    errors.timeBudgetMin = `The search time is a number of minutes above 0 and at most ${maxMinutes}, or blank for the default.`;
  }

  Object.assign(errors, preprocessingErrors(values.preprocessing));

  const available = new Set<string>(
    catalog.techniques.filter((t) => supportsFramework(t, values.framework)).map((t) => t.name),
  );
  const chosen = values.techniques.filter((t) => available.has(t));
  if (chosen.length === 0) errors.techniques = "Choose at least one technique to run.";
  return errors;
}

function parseSize(text: string): number[] | null | "invalid" {
  if (!text.trim()) return null;
  const parts = text.toLowerCase().split(/[x×,]/).map((part) => part.trim());
  if (parts.length !== 2 || parts.some((part) => !/^\d+$/.test(part))) return "invalid";
  return parts.map(Number);
}

function parseList(text: string): number[] | "invalid" {
  const parts = text.split(",").map((part) => part.trim());
  if (parts.some((part) => part === "" || !Number.isFinite(Number(part)))) return "invalid";
  return parts.map(Number);
}

export function preprocessingErrors(p: PreprocessingInputs): SetupErrors {
  const errors: SetupErrors = {};
  const size = parseSize(p.inputSize);
  if (size === "invalid" || (size && size.some((side) => side < 8 || side > 1024))) {
    errors.inputSize = "Input size is height x width, like 224x224, each side 8 to 1024 pixels; blank for the model's own.";
  }
  if (p.preset === "custom") {
    const mean = parseList(p.mean);
    const std = parseList(p.std);
    if (mean === "invalid" || ![1, 3].includes(mean.length)) errors.mean = "Mean is 1 or 3 numbers separated by commas.";
    if (std === "invalid" || ![1, 3].includes(std.length) || std.some((v) => v <= 0)) {
      errors.std = "Std is 1 or 3 positive numbers separated by commas.";
    } else if (mean !== "invalid" && mean.length !== std.length) {
      errors.std = "Give as many std values as mean values (one per channel).";
    }
  }
  return errors;
}

/** The form's preprocessing to the API's `Preprocessing`, or null for the model's own convention. */
export function preprocessingFromInputs(p: PreprocessingInputs): ExperimentCreate["preprocessing"] {
  const size = parseSize(p.inputSize);
  const untouched = p.preset === "model" && size === null && p.channelOrder === "rgb" && p.valueRange === "0-1";
  if (untouched) return null;
  const custom = p.preset === "custom";
  const mean = custom ? parseList(p.mean) : null;
  const std = custom ? parseList(p.std) : null;
  return {
    preset: (p.preset === "model" ? "none" : p.preset) as NonNullable<ExperimentCreate["preprocessing"]>["preset"],
    input_size: Array.isArray(size) ? size : null,
    channel_order: p.channelOrder,
    value_range: p.valueRange,
    mean: Array.isArray(mean) ? mean : null,
    std: Array.isArray(std) ? std : null,
  };
}

/** Constraint inputs (percent for accuracy) to the API's units (fractions); blank fields are left out. */
export function constraintsFromInputs(inputs: ConstraintInputs): NonNullable<ExperimentCreate["constraints"]> {
  const out: NonNullable<ExperimentCreate["constraints"]> = {};
  const num = (text: string): number | null => {
    const value = parseNumber(text);
    return typeof value === "number" ? value : null;
  };
  const minAccuracy = num(inputs.min_accuracy);
  if (minAccuracy !== null) out.min_accuracy = minAccuracy / 100;
  const maxDrop = num(inputs.max_accuracy_drop);
  if (maxDrop !== null) out.max_accuracy_drop = maxDrop / 100;
  const maxSize = num(inputs.max_size_mb);
  if (maxSize !== null) out.max_size_mb = maxSize;
  const maxLatency = num(inputs.max_latency_ms);
  if (maxLatency !== null) out.max_latency_ms = maxLatency;
  return out;
}

/** The API's constraint dict back into the form's strings (the results page edits the stored constraints). */
export function inputsFromConstraints(constraints: Record<string, number | null | undefined>): ConstraintInputs {
  const show = (value: number | null | undefined, scale: number): string =>
    value === null || value === undefined ? "" : String(Number((value * scale).toPrecision(6)));
  return {
    min_accuracy: show(constraints.min_accuracy, 100),
    max_accuracy_drop: show(constraints.max_accuracy_drop, 100),
    max_size_mb: show(constraints.max_size_mb, 1),
    max_latency_ms: show(constraints.max_latency_ms, 1),
  };
}

export function toCreateBody(values: SetupValues, catalog: Catalog): ExperimentCreate {
  const available = new Set<string>(
    catalog.techniques.filter((t) => supportsFramework(t, values.framework)).map((t) => t.name),
  );
  const epochs = parseNumber(values.epochs);
  const budgetMin = parseNumber(values.timeBudgetMin);
  // A custom archive replaces the dataset after creation (POST /dataset); the create body needs a preset name.
  const dataset = values.datasetMode === "preset" ? values.dataset : (catalog.datasets[0]?.name ?? values.dataset);
  return {
    name: values.name.trim(),
    framework: values.framework as ExperimentCreate["framework"],
    dataset: dataset as ExperimentCreate["dataset"],
    device: values.device as ExperimentCreate["device"],
    goal: values.goal as ExperimentCreate["goal"],
    constraints: constraintsFromInputs(values.constraints),
    techniques: values.techniques.filter((t) => available.has(t)) as TechniqueName[],
    arch: values.source === "architecture" ? (values.arch as NonNullable<ExperimentCreate["arch"]>) : null,
    epochs: typeof epochs === "number" ? epochs : null,
    time_budget_s: typeof budgetMin === "number" ? budgetMin * 60 : null,
    preprocessing: preprocessingFromInputs(values.preprocessing),
  };
}
