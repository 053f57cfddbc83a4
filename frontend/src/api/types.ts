/** Names for the generated OpenAPI types, so components import `RunResult`, not a path into the schema. */
import type { components } from "./schema.gen";

type Schemas = components["schemas"];

export type Report = Schemas["Report"];
export type RunResult = Schemas["RunResult"];
export type BaselineResult = Schemas["BaselineResult"];
export type Recommendation = Schemas["Recommendation"];
export type DeviceEstimate = Schemas["DeviceEstimate"];
export type BoardLatency = Schemas["BoardLatency"];
export type BoardCorrection = Schemas["BoardCorrection"];
export type Constraints = Schemas["Constraints"];
export type ExperimentCreate = Schemas["ExperimentCreate"];
export type ExperimentPublic = Schemas["ExperimentPublic"];
export type ExperimentsPublic = Schemas["ExperimentsPublic"];
export type ModelFilePublic = Schemas["ModelFilePublic"];
export type RecommendedSummaryPublic = Schemas["RecommendedSummaryPublic"];
export type GoalName = ExperimentCreate["goal"];
export type TechniqueName = NonNullable<ExperimentCreate["techniques"]>[number];

export type ConstraintName = keyof Constraints;
