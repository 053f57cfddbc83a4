"""The experiment's one description travels as JSON (Celery task payload, worker process job) and comes back equal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgeopt.pipeline import ExperimentSpec
from edgeopt.preprocessing import Preprocessing
from edgeopt.report import Constraints


def test_spec_round_trips_through_json_with_every_field() -> None:
    spec = ExperimentSpec(
        framework="pytorch",
        dataset="digits",
        device="rpi4",
        out_dir=Path("/tmp/out"),
        model=Path("/tmp/model.pt2"),
        goal="smallest",
        techniques=["ptq_int8", "ptq_int4"],
        constraints=Constraints(max_size_mb=2.0, min_accuracy=0.9),
        epochs=1,
        technique_configs={"ptq_int8": {"calibration_samples": 64}},
        seed=7,
        experiment_id="abc",
        dataset_label="digits",
        preprocessing=Preprocessing(input_size=[32, 32], channel_order="bgr", value_range="0-255"),
    )
    payload = json.loads(json.dumps(spec.to_payload()))
    back = ExperimentSpec.from_payload(payload)
    assert back == spec
    assert {f.name for f in dataclasses.fields(ExperimentSpec)} == set(payload)


def test_spec_is_frozen() -> None:
    spec = ExperimentSpec(framework="pytorch", dataset="digits", device="rpi4", out_dir=Path("/tmp/out"), arch="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 3  # type: ignore[misc]


def test_celery_settings_use_late_acks_requeue_on_worker_loss_and_a_time_limit_tied_to_the_visibility_timeout() -> None:
    from edgeopt.service.worker import celery_config
    from edgeopt.settings import Settings

    config = celery_config(
        Settings(_env_file=None, broker_url="redis://x:6379/0", task_time_limit_s=120)  # type: ignore[call-arg]
    )
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_time_limit"] == 120 and "task_soft_time_limit" not in config
    # Redis never hands a task that may still be running to a second worker, and a dead worker's task comes back
    # soon after the limit, not after kombu's default hour.
    visibility = config["broker_transport_options"]["visibility_timeout"]
    assert 120 < visibility <= 300
