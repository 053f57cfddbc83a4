/**
 * New experiment: choose the model and the configuration, then "Start optimization" creates the experiment,
 * uploads the model (and a custom dataset), starts it and opens the live progress page.
 */
import { useRef, useState, type FormEvent } from "react";
import { useNavigate } from "react-router";
import { createExperiment, deleteExperiment, startExperiment } from "../api/client";
import { ApiError, errorMessage } from "../api/errors";
import { uploadFile, type TransferProgress } from "../api/transfer";
import { ConfigurationForm } from "../components/ConfigurationForm";
import { ModelUpload } from "../components/ModelUpload";
import { useCatalog } from "../hooks/useCatalog";
import { initialSetupValues, toCreateBody, validateSetup, type SetupErrors, type SetupValues } from "../lib/setupForm";
import { routes } from "../routes";

type Step = "idle" | "creating" | "uploading" | "dataset" | "starting";

const STEP_TEXT: Record<Step, string> = {
  idle: "Start optimization",
  creating: "Creating the experiment…",
  uploading: "Uploading the model…",
  dataset: "Uploading the dataset…",
  starting: "Starting…",
};

export function SetupPage() {
  const catalog = useCatalog();
  const navigate = useNavigate();
  const [values, setValues] = useState<SetupValues>(() => initialSetupValues(catalog));
  const [errors, setErrors] = useState<SetupErrors>({});
  const [submitted, setSubmitted] = useState(false);
  const [step, setStep] = useState<Step>("idle");
  const [uploadProgress, setUploadProgress] = useState<TransferProgress | null>(null);
  const [modelRejected, setModelRejected] = useState<string | null>(null);
  const [formError, setFormError] = useState<string | null>(null);
  const summaryRef = useRef<HTMLDivElement>(null);

  const update = (patch: Partial<SetupValues>) => {
    const next = { ...values, ...patch };
    setValues(next);
    if ("modelFile" in patch || "framework" in patch) setModelRejected(null);
    // After a first attempt, errors follow the user's edits so a fixed field clears at once.
    if (submitted) setErrors(validateSetup(next, catalog));
  };

  const onSubmit = async (event: FormEvent) => {
    event.preventDefault();
    setSubmitted(true);
    setFormError(null);
    setModelRejected(null);
    const found = validateSetup(values, catalog);
    setErrors(found);
    if (Object.keys(found).length > 0) {
      requestAnimationFrame(() => summaryRef.current?.focus());
      return;
    }
    let experimentId: string | null = null;
    let failedStep: Step = "creating";
    try {
      setStep("creating");
      const experiment = await createExperiment(toCreateBody(values, catalog));
      experimentId = experiment.id;
      if (values.source === "upload" && values.modelFile) {
        failedStep = "uploading";
        setStep("uploading");
        setUploadProgress({ loaded: 0, total: values.modelFile.size });
        await uploadFile(experiment.id, "model", values.modelFile, setUploadProgress);
      }
      if (values.datasetMode === "custom" && values.datasetFile) {
        failedStep = "dataset";
        setStep("dataset");
        await uploadFile(experiment.id, "dataset", values.datasetFile, () => undefined);
      }
      failedStep = "starting";
      setStep("starting");
      await startExperiment(experiment.id);
      navigate(routes.progress(experiment.id));
    } catch (error) {
      const message = errorMessage(error);
      if (failedStep === "uploading" && error instanceof ApiError && error.status >= 400 && error.status < 500) {
        setModelRejected(message);
      } else if (failedStep === "dataset") {
        setFormError(`The dataset archive was refused: ${message}`);
      } else {
        setFormError(message);
      }
      // An experiment without a usable model or dataset is of no use in the list: remove it and let the user retry.
      if (experimentId && failedStep !== "starting") await deleteExperiment(experimentId).catch(() => undefined);
      setStep("idle");
      setUploadProgress(null);
    }
  };

  const errorCount = Object.keys(errors).length;
  const busy = step !== "idle";
  return (
    <form noValidate onSubmit={onSubmit} className="space-y-6" aria-labelledby="setup-heading">
      <h1 id="setup-heading" className="h-page">
        New experiment
      </h1>
      {submitted && errorCount > 0 && (
        <div ref={summaryRef} tabIndex={-1} role="alert" className="rounded-md border border-red-300 bg-red-50 p-3 text-sm text-red-900">
          {errorCount === 1 ? "One field needs attention" : `${errorCount} fields need attention`}: see the messages below.
        </div>
      )}
      <div className="grid gap-6 lg:grid-cols-[2fr_3fr]">
        <ModelUpload
          source={values.source}
          onSourceChange={(source) => update({ source })}
          file={values.modelFile}
          onFileChange={(modelFile) => update({ modelFile })}
          arch={values.arch}
          onArchChange={(arch) => update({ arch })}
          architectures={catalog.architectures}
          fileError={errors.modelFile}
          archError={errors.arch}
          serverError={modelRejected}
          progress={step === "uploading" ? uploadProgress : null}
          disabled={busy}
        />
        <ConfigurationForm catalog={catalog} values={values} errors={errors} onChange={update} disabled={busy} />
      </div>
      {formError && (
        <div role="alert" className="rounded-md border border-red-300 bg-red-50 p-3 text-sm text-red-900">
          {formError}
        </div>
      )}
      <div className="flex justify-end">
        <button type="submit" className="btn-primary" disabled={busy} aria-busy={busy}>
          {STEP_TEXT[step]}
        </button>
      </div>
    </form>
  );
}
