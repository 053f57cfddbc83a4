/**
 * The capability manifest from `GET /api/catalog` (the `edgeopt.catalog` tables as JSON).
 *
 * The route is typed `dict[str, Any]` in the service, so its OpenAPI schema says nothing: the shape is written here
 * from `edgeopt.catalog.as_dict()` and checked when it arrives, so a changed manifest gives a clear error page
 * instead of empty dropdowns.
 */
export interface TechniqueInfo {
  name: string;
  title: string;
  summary: string;
  frameworks: string[];
  needs_training_data: boolean;
  fine_tunes: boolean;
  relative_cost: number;
}

export interface NamedInfo {
  name: string;
  title: string;
  summary: string;
}

export interface DatasetInfo extends NamedInfo {
  num_classes: number;
  image_shape: number[];
  always_available: boolean;
}

export interface ArchitectureInfo {
  name: string;
  title: string;
  torchvision: string;
  keras_application: string;
  default_input: number[];
}

/** A normalization a user can declare for their model's input (`edgeopt.preprocessing`); statistics in 0..1, RGB. */
export interface PreprocessingPreset {
  name: string;
  title: string;
  mean: number[] | null;
  std: number[] | null;
}

export interface Catalog {
  preprocessing_presets: PreprocessingPreset[];
  frameworks: string[];
  techniques: TechniqueInfo[];
  devices: NamedInfo[];
  goals: NamedInfo[];
  datasets: DatasetInfo[];
  architectures: ArchitectureInfo[];
}

function listOfNamed(value: unknown, key: string): Record<string, unknown>[] {
  if (!Array.isArray(value) || value.some((item) => typeof item !== "object" || item === null || !("name" in item))) {
    throw new Error(`The service's catalog has no valid "${key}" list; the web app and the service may be out of step.`);
  }
  return value as Record<string, unknown>[];
}

export function parseCatalog(value: unknown): Catalog {
  if (typeof value !== "object" || value === null) throw new Error("The service's catalog is empty.");
  const record = value as Record<string, unknown>;
  const frameworks = record.frameworks;
  if (!Array.isArray(frameworks) || frameworks.some((f) => typeof f !== "string")) {
    throw new Error('The service\'s catalog has no valid "frameworks" list.');
  }
  return {
    frameworks: frameworks as string[],
    techniques: listOfNamed(record.techniques, "techniques") as unknown as TechniqueInfo[],
    devices: listOfNamed(record.devices, "devices") as unknown as NamedInfo[],
    goals: listOfNamed(record.goals, "goals") as unknown as NamedInfo[],
    datasets: listOfNamed(record.datasets, "datasets") as unknown as DatasetInfo[],
    architectures: listOfNamed(record.architectures, "architectures") as unknown as ArchitectureInfo[],
    preprocessing_presets: listOfNamed(record.preprocessing_presets, "preprocessing_presets") as unknown as PreprocessingPreset[],
  };
}

/** Human titles: "pytorch" -> "PyTorch". Frameworks are bare names in the manifest. */
export const FRAMEWORK_TITLES: Record<string, string> = { pytorch: "PyTorch", tensorflow: "TensorFlow / Keras" };

export function titleOf(list: readonly { name: string; title: string }[], name: string | null | undefined): string {
  if (!name) return "—";
  return list.find((item) => item.name === name)?.title ?? name;
}
