/** The catalog as the service sends it (edgeopt.catalog.as_dict), trimmed to what the tests need. */
import type { Catalog, TechniqueInfo } from "../api/catalog";

export const catalog: Catalog = {
  frameworks: ["pytorch", "tensorflow"],
  techniques: [
    ["ptq_int8", "Post-training INT8", "Converts weights and activations to 8-bit integers."],
    ["ptq_int4", "Post-training INT4 weights", "Stores weights as 4-bit integers."],
    ["prune_structured", "Structured pruning", "Removes half of the channels."],
    ["distillation", "Knowledge distillation", "Trains a half-width copy of the model."],
  ].map(([name, title, summary]) => ({
    name: name as TechniqueInfo["name"],
    title: title as string,
    summary: summary as string,
    frameworks: ["pytorch", "tensorflow"],
    needs_training_data: true,
    fine_tunes: false,
    relative_cost: 1,
  })),
  devices: [
    { name: "rpi4", title: "Raspberry Pi 4 Model B", summary: "4x Cortex-A72." },
    { name: "rpi5", title: "Raspberry Pi 5", summary: "4x Cortex-A76." },
    { name: "rpi_zero_2w", title: "Raspberry Pi Zero 2 W", summary: "4x Cortex-A53, 512 MB." },
  ],
  goals: [
    { name: "maximize_accuracy", title: "Maximize accuracy", summary: "Keep accuracy." },
    { name: "minimize_size", title: "Minimize size", summary: "Smallest file." },
    { name: "minimize_latency", title: "Minimize latency", summary: "Fastest." },
    { name: "balanced", title: "Balanced", summary: "Closest to the ideal." },
  ],
  datasets: [
    { name: "digits", title: "Digits", summary: "8x8 digits.", num_classes: 10, image_shape: [8, 8, 1], always_available: true },
    { name: "mnist", title: "MNIST", summary: "28x28 digits.", num_classes: 10, image_shape: [28, 28, 1], always_available: false },
  ],
  architectures: [
    { name: "resnet18", title: "ResNet-18", torchvision: "resnet18", keras_application: "ResNet18", default_input: [224, 224, 3] },
  ],
  preprocessing_presets: [
    { name: "none", title: "No normalization", mean: null, std: null },
    { name: "imagenet", title: "ImageNet mean/std", mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
    { name: "cifar", title: "CIFAR mean/std", mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] },
    { name: "custom", title: "Custom mean/std", mean: null, std: null },
  ],
  statuses: {
    all: ["created", "ready", "queued", "running", "completed", "failed", "cancelled", "interrupted"],
    active: ["queued", "running"],
    finished: ["completed", "failed", "cancelled", "interrupted"],
  },
  limits: { max_epochs: 100, max_time_budget_s: 604800 },
};
