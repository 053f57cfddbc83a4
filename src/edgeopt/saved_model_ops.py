"""The operations a SavedModel's graph would run, read from ``saved_model.pb`` before TensorFlow ever loads it.

A SavedModel without Keras metadata is loaded as a bare graph (``tf.saved_model.load``): whatever operations its
functions hold are what TensorFlow runs. Some run Python or touch files: ``PyFunc`` and ``EagerPyFunc`` call Python
functions, ``ReadFile``/``WriteFile``/``Save``/``Restore`` and friends read and write any path. The graph is
therefore checked against an allow-list of operations that only compute on tensors (array, math, neural-network,
control-flow and variable operations); the checkpoint operations a SavedModel needs to restore its own variables
(``RestoreV2`` and its companions) are allowed only in the functions TensorFlow writes for that
(``__inference__traced_restore_*`` and ``__inference__traced_save_*``), and no other function may call those.

The message is decoded with protobuf's wire decoder as unknown fields of an empty message, as
``edgeopt.keras_config`` does for ``keras_metadata.pb``: the generated classes live in TensorFlow, whose import this
check must not need. Field numbers (tensorflow/core/protobuf/saved_model.proto, meta_graph.proto,
tensorflow/core/framework/graph.proto, node_def.proto, function.proto, attr_value.proto):
SavedModel.meta_graphs = 2; MetaGraphDef.graph_def = 2; GraphDef.node = 1, GraphDef.library = 2;
FunctionDefLibrary.function = 1; FunctionDef.signature = 1 (OpDef.name = 1), FunctionDef.node_def = 3;
NodeDef.name = 1, NodeDef.op = 2, NodeDef.attr = 5 (map entry: key = 1, value = 2);
AttrValue.list = 1 (ListValue.func = 9), AttrValue.func = 10; NameAttrList.name = 1.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.errors import InvalidInput

MAX_GRAPH_BYTES = 512 * 1024**2
_LEN = 2  # protobuf wire type of length-delimited fields

# Operations that compute on tensors only. Grouped as TensorFlow's op files group them; anything else is refused.
_ARRAY = """Const Placeholder PlaceholderWithDefault Identity IdentityN Snapshot StopGradient PreventGradient
CheckNumerics CheckNumericsV2 EnsureShape Reshape Shape ShapeN Size Rank Squeeze ExpandDims Transpose ConjugateTranspose
Pack Unpack Concat ConcatV2 ConcatOffset Split SplitV Slice StridedSlice StridedSliceGrad Tile Pad PadV2 MirrorPad
Fill ZerosLike OnesLike Range LinSpace Gather GatherV2 GatherNd ScatterNd TensorScatterUpdate TensorScatterAdd
Reverse ReverseV2 Where Select SelectV2 BroadcastTo BroadcastArgs BroadcastGradientArgs OneHot Cast Bitcast
DepthToSpace SpaceToDepth SpaceToBatchND BatchToSpaceND Unique InvertPermutation MatrixDiag MatrixDiagV3
MatrixBandPart Empty DeepCopy Einsum Roll UniqueV2 ClipByValue"""
_MATH = """Add AddV2 AddN Sub Mul MulNoNan Div DivNoNan RealDiv FloorDiv FloorMod Mod TruncateDiv TruncateMod Neg
Abs Sign Square Sqrt Rsqrt Exp Expm1 Log Log1p Pow Reciprocal Inv Maximum Minimum SquaredDifference Floor Ceil
Round Rint Sin Cos Tan Asin Acos Atan Atan2 Sinh Cosh Tanh Asinh Acosh Atanh Erf Erfc Sigmoid Softplus Softsign
MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Sum Mean Max Min Prod All Any ArgMax ArgMin Cumsum Cumprod
Equal NotEqual Less LessEqual Greater GreaterEqual LogicalAnd LogicalOr LogicalNot IsNan IsInf IsFinite
Xdivy Xlogy BiasAdd BiasAddV1 Relu Relu6 Elu Selu LeakyRelu Gelu Softmax LogSoftmax TopKV2 L2Loss"""
_NN = """Conv2D Conv2DBackpropInput Conv3D DepthwiseConv2dNative MaxPool MaxPoolV2 MaxPool3D AvgPool AvgPool3D
FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 LRN ResizeBilinear ResizeNearestNeighbor ResizeBicubic ResizeArea
ScaleAndTranslate CropAndResize Dilation2D FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVars
FakeQuantWithMinMaxVarsPerChannel QuantizeAndDequantizeV2 QuantizeAndDequantizeV3 QuantizeAndDequantizeV4
_FusedConv2D _FusedMatMul _FusedBatchNormEx"""
_CONTROL = """NoOp PartitionedCall StatefulPartitionedCall If StatelessIf While StatelessWhile Case StatelessCase
Switch Merge Enter Exit NextIteration LoopCond Assert"""
_VARIABLES = """VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp VarIsInitializedOp
DestroyResourceOp ResourceGather VariableShape Variable VariableV2 Assign DisableCopyOnRead"""
_RANDOM = """RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal StatelessRandomUniform
StatelessRandomNormal StatelessRandomUniformV2 StatelessRandomNormalV2 StatelessRandomUniformIntV2
StatelessTruncatedNormalV2 StatelessRandomGetKeyCounter StatelessRandomGetAlg StatelessRandomGetKeyCounterAlg
RngReadAndSkip"""
ALLOWED_OPS = frozenset(" ".join((_ARRAY, _MATH, _NN, _CONTROL, _VARIABLES, _RANDOM)).split())
# What a SavedModel's own save and restore functions use to write and read its variables' checkpoint.
CHECKPOINT_OPS = frozenset(
    [
        "SaveV2",
        "RestoreV2",
        "MergeV2Checkpoints",
        "ShardedFilename",
        "StringJoin",
        "StaticRegexFullMatch",
        "Select",
        "SelectV2",
    ]
)
CHECKPOINT_FUNCTION = re.compile(r"^__inference__traced_(save|restore)_\d+$")


def _fields(blob: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(field number, wire type, bytes of a length-delimited field) of one message."""
    from google.protobuf import empty_pb2
    from google.protobuf.unknown_fields import UnknownFieldSet

    for item in UnknownFieldSet(empty_pb2.Empty.FromString(blob)):
        yield item.field_number, item.wire_type, item.data if item.wire_type == _LEN else b""


def _sub(blob: bytes, number: int) -> Iterator[bytes]:
    for field_number, wire_type, data in _fields(blob):
        if field_number == number and wire_type == _LEN:
            yield data


def _text(blob: bytes, number: int) -> str:
    for data in _sub(blob, number):
        return data.decode("utf-8", errors="replace")
    return ""


def _called_functions(attr_value: bytes) -> Iterator[str]:
    """Names of the functions an attribute value refers to (``func`` or a list of them)."""
    for name_attrs in _sub(attr_value, 10):
        yield _text(name_attrs, 1)
    for list_value in _sub(attr_value, 1):
        for name_attrs in _sub(list_value, 9):
            yield _text(name_attrs, 1)


@dataclass
class _Node:
    op: str
    name: str
    calls: list[str] = field(default_factory=list)


def _node(blob: bytes) -> _Node:
    node = _Node(op=_text(blob, 2), name=_text(blob, 1))
    for entry in _sub(blob, 5):
        for value in _sub(entry, 2):
            node.calls.extend(_called_functions(value))
    return node


def graph_nodes(blob: bytes) -> dict[str, list[_Node]]:
    """Every node of a ``saved_model.pb``: ``""`` for the top-level graphs, else by function name."""
    from google.protobuf.message import DecodeError

    graphs: dict[str, list[_Node]] = {"": []}
    try:
        for meta_graph in _sub(blob, 2):
            for graph in _sub(meta_graph, 2):
                graphs[""].extend(_node(node) for node in _sub(graph, 1))
                for library in _sub(graph, 2):
                    for function in _sub(library, 1):
                        name = "".join(_text(signature, 1) for signature in _sub(function, 1))
                        graphs.setdefault(name, []).extend(_node(node) for node in _sub(function, 3))
    except DecodeError as exc:
        raise InvalidInput(f"The SavedModel's saved_model.pb is damaged ({exc}).", field="file") from exc
    return graphs


def check_graph(blob: bytes, source: str) -> None:
    """Refuse (400) a graph with an operation outside the allow-list, naming the operation and where it sits."""
    for function, nodes in graph_nodes(blob).items():
        where = f"function {function}" if function else "the top-level graph"
        checkpoint_allowed = not function or CHECKPOINT_FUNCTION.match(function)
        for node in nodes:
            allowed = node.op in ALLOWED_OPS or (checkpoint_allowed and node.op in CHECKPOINT_OPS)
            if not allowed:
                raise InvalidInput(
                    f"{source} is refused: its graph runs the operation {node.op!r} (node {node.name!r} in {where}), "
                    "which is not one EdgeOpt allows in an uploaded SavedModel: only operations that compute on "
                    "tensors are, never ones that run Python or read and write files. Export the model without it "
                    "(for example as a Keras model with model.save('model.keras')).",
                    field="file",
                )
            if function and not CHECKPOINT_FUNCTION.match(function):
                called = [name for name in node.calls if CHECKPOINT_FUNCTION.match(name)]
                if called:
                    raise InvalidInput(
                        f"{source} is refused: function {function} calls the checkpoint function {called[0]}, which "
                        "only TensorFlow's own save and restore may run; it could read or write files.",
                        field="file",
                    )


def check_saved_model_zip(path: Path) -> None:
    """Check the graph of every ``saved_model.pb`` in a zipped SavedModel (all of them, whichever the loader picks)."""
    with zipfile.ZipFile(path) as archive:
        graphs = [i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == "saved_model.pb"]
        if not graphs:
            raise InvalidInput(f"{path.name} holds no saved_model.pb.", field="file")
        for info in graphs:
            if info.file_size > MAX_GRAPH_BYTES:
                raise InvalidInput(f"{info.filename} in the archive is implausibly large.", field="file")
            with archive.open(info) as handle:
                check_graph(handle.read(MAX_GRAPH_BYTES + 1), path.name)
