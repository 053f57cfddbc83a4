"""A bare SavedModel's graph is read before TensorFlow loads it, and any operation outside the allow-list is refused.

The ``saved_model.pb`` payloads are encoded here field by field (the field numbers are listed in
``src/edgeopt/saved_model_ops.py``), so the hostile ones need no TensorFlow to build and no binary is committed.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edgeopt.errors import InvalidInput
from edgeopt.saved_model_ops import check_graph

SAVE = "__inference__traced_save_123"
RESTORE = "__inference__traced_restore_456"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def node(name: str, op: str, calls: str | None = None) -> bytes:
    body = _field(1, name) + _field(2, op)
    if calls is not None:  # attr {"f": AttrValue(func=NameAttrList(name=calls))}
        body += _field(5, _field(1, "f") + _field(2, _field(10, _field(1, calls))))
    return body


def function(name: str, *nodes: bytes) -> bytes:
    return _field(1, _field(1, name)) + b"".join(_field(3, n) for n in nodes)


def saved_model(top: list[bytes], functions: list[bytes]) -> bytes:
    library = b"".join(_field(1, f) for f in functions)
    graph = b"".join(_field(1, n) for n in top) + _field(2, library)
    return _varint(1 << 3) + _varint(1) + _field(2, _field(2, graph))  # schema version 1, one meta graph


def graph_with(*serving_nodes: bytes) -> bytes:
    """A SavedModel as TensorFlow writes one: a serving function, its variables' save and restore functions."""
    serving = function(
        "__inference_signature_wrapper_789",
        node("x", "Placeholder"),
        node("w", "ReadVariableOp"),
        node("y", "MatMul"),
        node("out", "Identity"),
        *serving_nodes,
    )
    save = function(SAVE, node("save", "SaveV2"), node("merge", "MergeV2Checkpoints"), node("f", "ShardedFilename"))
    restore = function(RESTORE, node("restore", "RestoreV2"), node("assign", "AssignVariableOp"))
    top = [
        node("saver_filename", "Placeholder"),
        node("variable", "VarHandleOp"),
        node("StatefulPartitionedCall", "StatefulPartitionedCall", calls=SAVE),
        node("StatefulPartitionedCall_1", "StatefulPartitionedCall", calls=RESTORE),
    ]
    return saved_model(top, [serving, save, restore])


def test_a_plain_graph_with_its_own_checkpoint_functions_passes() -> None:
    check_graph(graph_with(), "model.zip")


@pytest.mark.parametrize("op", ["PyFunc", "EagerPyFunc", "ReadFile", "WriteFile", "Save", "Restore", "PrintV2"])
def test_an_operation_that_runs_python_or_touches_files_is_refused_by_name(op: str) -> None:
    with pytest.raises(InvalidInput, match=rf"runs the operation '{op}' \(node 'hostile' in function ") as caught:
        check_graph(graph_with(node("hostile", op)), "model.zip")
    assert caught.value.field == "file"


def test_checkpoint_operations_outside_the_checkpoint_functions_are_refused() -> None:
    with pytest.raises(InvalidInput, match="'RestoreV2'"):
        check_graph(graph_with(node("read_any_checkpoint", "RestoreV2")), "model.zip")


def test_no_other_function_may_call_the_checkpoint_functions() -> None:
    with pytest.raises(InvalidInput, match=f"calls the checkpoint function {SAVE}"):
        check_graph(graph_with(node("write_anywhere", "StatefulPartitionedCall", calls=SAVE)), "model.zip")


def test_a_damaged_graph_is_refused() -> None:
    with pytest.raises(InvalidInput, match="damaged"):
        check_graph(b"\x12\xff\xff\xff\xff\x0f", "model.zip")


def _zipped(graph: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m/saved_model.pb", graph)
        archive.writestr("m/variables/variables.index", b"")
    return buffer.getvalue()


def test_upload_of_a_bare_saved_model_with_pyfunc_is_refused_naming_the_op(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], stored_files: Callable[[], list[Any]]
) -> None:
    experiment = new_experiment(framework="tensorflow")
    body = _zipped(graph_with(node("call_python", "PyFunc")))
    response = client.post(f"/api/experiments/{experiment['id']}/upload", files={"file": ("m.zip", body)})
    assert response.status_code == 400, response.text
    assert "'PyFunc'" in response.json()["detail"]
    assert client.get(f"/api/experiments/{experiment['id']}").json()["status"] == "created"
    assert stored_files() == []


def test_a_saved_model_with_harmless_keras_metadata_is_still_held_to_the_op_allow_list(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], stored_files: Callable[[], list[Any]]
) -> None:
    """Loading restores the graph's functions as well as the Keras layers: a clean config must not wave a PyFunc in."""
    from tests.service.test_formats import DENSE, _keras_metadata, _sequential

    experiment = new_experiment(framework="tensorflow")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m/saved_model.pb", graph_with(node("call_python", "PyFunc")))
        archive.writestr("m/keras_metadata.pb", _keras_metadata(_sequential(DENSE)))
        archive.writestr("m/variables/variables.index", b"")
    response = client.post(f"/api/experiments/{experiment['id']}/upload", files={"file": ("m.zip", buffer.getvalue())})
    assert response.status_code == 400, response.text
    assert "'PyFunc'" in response.json()["detail"]
    assert stored_files() == []
