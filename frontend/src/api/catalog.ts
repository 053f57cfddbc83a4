/**
 * The capability manifest from `GET /api/catalog`: every name a user can choose (`edgeopt.catalog`) and the
 * service's statuses and limits (`CatalogPublic` in `edgeopt.service.schemas`), typed by the generated schema.
 * It is still checked when it arrives, so a service out of step with this page gives a clear error page instead of
 * empty dropdowns.
 */
import type { components } from "./schema.gen";

type Schemas = components["schemas"];

export type Catalog = Schemas["CatalogPublic"];
export type TechniqueInfo = Schemas["TechniqueInfo"];
/** A device or a goal: a name, a title and a sentence. */
export type NamedInfo = Schemas["DeviceInfo"] | Schemas["GoalInfo"];
export type DatasetInfo = Schemas["DatasetInfo"];
export type ArchitectureInfo = Schemas["ArchitectureInfo"];
/** A normalization a user can declare for their model's input (`edgeopt.preprocessing`); statistics in 0..1, RGB. */
export type PreprocessingPreset = Schemas["PreprocessingPresetInfo"];
export type Statuses = Schemas["StatusesPublic"];
export type ExperimentStatus = Statuses["all"][number];

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
  const statuses = record.statuses as Record<string, unknown> | undefined;
  const limits = record.limits as Record<string, unknown> | undefined;
  if (!statuses || !["all", "active", "finished"].every((key) => Array.isArray(statuses[key]))) {
    throw new Error('The service\'s catalog has no valid "statuses"; the web app and the service may be out of step.');
  }
  if (!limits || typeof limits.max_epochs !== "number" || typeof limits.max_time_budget_s !== "number") {
    throw new Error('The service\'s catalog has no valid "limits"; the web app and the service may be out of step.');
  }
  return {
    frameworks: frameworks as Catalog["frameworks"],
    techniques: listOfNamed(record.techniques, "techniques") as unknown as Catalog["techniques"],
    devices: listOfNamed(record.devices, "devices") as unknown as Catalog["devices"],
    goals: listOfNamed(record.goals, "goals") as unknown as Catalog["goals"],
    datasets: listOfNamed(record.datasets, "datasets") as unknown as Catalog["datasets"],
    architectures: listOfNamed(record.architectures, "architectures") as unknown as Catalog["architectures"],
    preprocessing_presets: listOfNamed(record.preprocessing_presets, "preprocessing_presets") as unknown as Catalog["preprocessing_presets"],
    statuses: statuses as unknown as Statuses,
    limits: limits as unknown as Catalog["limits"],
  };
}

/** Human titles: "pytorch" -> "PyTorch". Frameworks are bare names in the manifest. */
export const FRAMEWORK_TITLES: Record<string, string> = { pytorch: "PyTorch", tensorflow: "TensorFlow / Keras" };

export function titleOf(list: readonly { name: string; title: string }[], name: string | null | undefined): string {
  if (!name) return "—";
  return list.find((item) => item.name === name)?.title ?? name;
}

/** Whether a technique runs on a framework; the form holds the framework as a plain string. */
export function supportsFramework(technique: TechniqueInfo, framework: string): boolean {
  return (technique.frameworks as readonly string[]).includes(framework);
}

/** Whether a status is in one of the catalog's groups (`statuses.active`, `statuses.finished`). */
export function statusIn(group: readonly string[], status: string): boolean {
  return group.includes(status);
}
