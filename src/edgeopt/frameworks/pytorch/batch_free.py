"""Frees the batch dimension of a program exported at a fixed batch, by running it on two images at once.

A program exported with a batch-1 example writes the batch into every reshape as a literal, and not always as the
leading size: ``nn.MultiheadAttention`` reshapes to ``(tokens, batch * heads, head_dim)``, Swin and MaxViT to
``(batch * windows, ...)``. Which size of ``view(17, 2, 16)`` holds the batch cannot be read from the literals (at
batch 1, ``17 * batch`` and ``2 * batch`` look alike), but it can be tested: the graph is run at batch 1 on two
images, then on both together, and at each literal reshape the batch is put into one size after another until every
value computed from it holds exactly the two single-image values side by side. A choice that mixes the images is
found at the first value that no longer matches, and the next possible choice is tried (depth first). The chosen
sizes then become ``size * x.size(0)`` in the graph, so it runs at any batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.fx import GraphModule, Interpreter, Node

aten = torch.ops.aten

_RESHAPES = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)
MAX_TRIES = 256  # depth-first choices tried before giving up (each is one run of the graph at batch 2)


class BatchNotFound(Exception):
    """No placement of the batch in the graph's literal shapes keeps the two images apart."""

    def __init__(self, node: Node | None, reason: str) -> None:
        super().__init__(reason)
        self.node = node


@dataclass
class _Choice:
    key: tuple[Any, ...]  # the same reshape of the same layout (every head of every block): one decision for all
    options: list[int]  # dimensions of the literal shape that may hold the batch; -1 means "leave the literal"
    index: int = 0


@dataclass
class _Layout:
    """Where the batch sits in a value at batch 2: dimension ``dim``, with ``inner`` elements of it inside."""

    dim: int
    inner: int


@dataclass
class _Run:
    choices: list[_Choice] = field(default_factory=list)
    placed: dict[Node, int] = field(default_factory=dict)  # every literal reshape given the batch, and where
    failed_at: Node | None = None
    reason: str = ""


def free_literal_batch(module: GraphModule, example: torch.Tensor) -> int:
    """Rewrites ``module``'s literal reshape sizes that hold the batch; returns how many were rewritten.

    ``example`` is one image batch of the exported size (batch 1). Raises ``BatchNotFound`` with the operation
    where no placement keeps the images apart (a batch reduced over, or folded where no reshape can free it).
    """
    generator = torch.Generator().manual_seed(0)
    pair = torch.rand((2, *example.shape[1:]), generator=generator, dtype=example.dtype)
    references = [_values(module, pair[i : i + 1]) for i in range(2)]
    choices: list[_Choice] = []
    deepest: _Run | None = None
    for _ in range(MAX_TRIES):
        run = _Run(choices=[_Choice(c.key, c.options, c.index) for c in choices])
        _TwoImages(module, references, run).run(pair)
        if run.failed_at is None:
            return _rewrite(module, run.placed)
        if deepest is None or _position(module, run.failed_at) > _position(module, deepest.failed_at):
            deepest = run
        choices = run.choices
        while choices and choices[-1].index + 1 >= len(choices[-1].options):
            choices.pop()
        if not choices:
            break
        choices[-1].index += 1
    assert deepest is not None
    raise BatchNotFound(deepest.failed_at, deepest.reason)


def _position(module: GraphModule, node: Node | None) -> int:
    for index, candidate in enumerate(module.graph.nodes):
        if candidate is node:
            return index
    return -1


def _values(module: GraphModule, image: torch.Tensor) -> dict[Node, Any]:
    recorder = _Recorder(module)
    with torch.no_grad():
        recorder.run(image)
    return recorder.values


class _Recorder(Interpreter):
    def __init__(self, module: GraphModule) -> None:
        super().__init__(module)
        self.values: dict[Node, Any] = {}

    def run_node(self, n: Node) -> Any:
        result = super().run_node(n)
        # A copy: a later in-place op in the graph would otherwise change the recorded value.
        self.values[n] = result.clone() if isinstance(result, torch.Tensor) else result
        return result


class _Stop(Exception):
    pass


class _TwoImages(Interpreter):
    """Runs the graph on two images, placing the batch in literal shapes by the run's choices, checking each value."""

    def __init__(self, module: GraphModule, references: list[dict[Node, Any]], run: _Run) -> None:
        super().__init__(module)
        self.references = references
        self.record = run
        self.layouts: dict[Node, _Layout | None] = {}
        self.next_choice = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            with torch.no_grad():
                return super().run(*args, **kwargs)
        except _Stop:
            return None

    def run_node(self, n: Node) -> Any:
        try:
            if _is_literal_reshape(n):
                result, layout = self._reshape(n)
            else:
                result = super().run_node(n)
                layout = self._layout_of(n, result)
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - a placement the graph cannot run: try the next one
            self._fail(n, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''}")
        self.layouts[n] = layout
        return result

    def _fail(self, n: Node, reason: str) -> None:
        self.record.failed_at, self.record.reason = n, reason
        raise _Stop

    def _reshape(self, n: Node) -> tuple[Any, _Layout | None]:
        source, shape = n.args[0], list(n.args[1])  # type: ignore[arg-type]
        value = self.env[source]  # type: ignore[index]
        before = self.references[0][source]  # type: ignore[index]
        after = self.references[0][n]
        layout = self.layouts.get(source)  # type: ignore[arg-type]
        if n.target is aten.expand.default:
            # A stored tensor (a class token) broadcast to the batch, or a batch-carrying value broadcast further.
            if layout is not None:
                options = [-1] if shape[layout.dim] == -1 else [layout.dim]
            else:
                options = [0, -1] if shape and shape[0] == 1 else [-1]
        elif layout is None:
            options = [-1]  # the batch never reached this value: its literal shape stays
        else:
            options = _placements(before.shape, layout, after.shape, shape)
            if not options:
                self._fail(n, f"the batch of {tuple(before.shape)} fits none of the sizes {tuple(after.shape)}")
        key = (n.target, tuple(before.shape), layout.dim if layout else None, layout.inner if layout else None,
               tuple(shape))  # fmt: skip
        choice = self._choose(key, options)
        sizes = list(shape)
        if choice >= 0:
            sizes[choice] = 2 if n.target is aten.expand.default else int(after.shape[choice]) * 2
            self.record.placed[n] = choice
        result = n.target(value, sizes, *n.args[2:])  # type: ignore[operator]
        return result, self._layout_of(n, result)

    def _choose(self, key: tuple[Any, ...], options: list[int]) -> int:
        if len(options) == 1:
            return options[0]
        made = next((c for c in self.record.choices[: self.next_choice] if c.key == key), None)
        if made is not None:
            return made.options[made.index]
        if self.next_choice < len(self.record.choices):
            choice = self.record.choices[self.next_choice]
            if choice.key != key:  # an earlier choice changed which reshapes see the batch: start this one over
                del self.record.choices[self.next_choice :]
                choice = _Choice(key, options)
                self.record.choices.append(choice)
        else:
            choice = _Choice(key, options)
            self.record.choices.append(choice)
        self.next_choice += 1
        return choice.options[choice.index]

    def _layout_of(self, n: Node, result: Any) -> _Layout | None:
        """Where the batch is in ``result``, checked against the single-image values; fails the run if nowhere."""
        if not isinstance(result, torch.Tensor):
            return None
        one, two = self.references[0].get(n), self.references[1].get(n)
        if not isinstance(one, torch.Tensor) or not isinstance(two, torch.Tensor):
            return None
        if result.shape == one.shape:
            if _close(result, one) and _close(result, two):
                return None  # the same for both images: the batch does not reach this value
            self._fail(n, "the two images' values are mixed here")
        grown = [d for d in range(result.dim()) if result.dim() == one.dim() and result.shape[d] != one.shape[d]]
        if len(grown) != 1 or result.shape[grown[0]] != 2 * one.shape[grown[0]]:
            self._fail(n, f"a batch of 2 gave shape {tuple(result.shape)} where one image gives {tuple(one.shape)}")
        dim = grown[0]
        size = int(one.shape[dim])
        for inner in _divisors_outer_first(size):
            if _holds_both(result, one, two, dim, inner):
                return _Layout(dim, inner)
        self._fail(n, "the two images' values are mixed here")
        return None


def _is_literal_reshape(n: Node) -> bool:
    if n.op != "call_function" or n.target not in (*_RESHAPES, aten.expand.default) or len(n.args) < 2:
        return False
    shape = n.args[1]
    return isinstance(shape, list | tuple) and all(isinstance(s, int) for s in shape)


def _placements(before: torch.Size, layout: _Layout, after: torch.Size, literal: list[int]) -> list[int]:
    """Dimensions of ``after`` that can hold the batch of ``before`` (same memory stride), the literal ``-1`` first.

    At batch 1 the batch has ``inner * prod(before[dim + 1:])`` elements inside it; in ``after`` it must sit in a
    dimension whose trailing sizes divide that count, with the rest of the count (its inner part) dividing the size.
    """
    stride = layout.inner * math.prod(int(s) for s in before[layout.dim + 1 :])
    options = []
    for dim in range(len(after)):
        trailing = math.prod(int(s) for s in after[dim + 1 :])
        if stride % trailing == 0 and int(after[dim]) % (stride // trailing) == 0:
            options.append(dim)
    free = [d for d in options if literal[d] == -1]
    if free:
        return [-1]  # the literal already leaves this size to be computed: it absorbs the batch by itself
    return options


def _divisors_outer_first(size: int) -> list[int]:
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    return [size, *[d for d in divisors if d != size]]


def _holds_both(result: torch.Tensor, one: torch.Tensor, two: torch.Tensor, dim: int, inner: int) -> bool:
    outer = int(one.shape[dim]) // inner
    split = result.unflatten(dim, (outer, 2, inner))
    return all(
        _close(split.select(dim + 1, i), reference.unflatten(dim, (outer, inner)))
        for i, reference in enumerate((one, two))
    )


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return bool(torch.equal(a, b))
    scale = float(b.abs().max()) if b.numel() else 0.0
    return bool(torch.allclose(a, b, rtol=1e-3, atol=1e-4 * max(1.0, scale)))


def _rewrite(module: GraphModule, placed: dict[Node, int]) -> int:
    """Replaces each chosen literal size by ``size * x.size(0)`` (expand: by ``x.size(0)``)."""
    import operator

    image = next(node for node in module.graph.nodes if node.op == "placeholder")
    rewritten = 0
    for node, dim in placed.items():
        shape = list(node.args[1])  # type: ignore[arg-type]
        with module.graph.inserting_before(node):
            batch = module.graph.call_function(aten.sym_size.int, (image, 0))
            size = batch if shape[dim] == 1 or node.target is aten.expand.default else None
            if size is None:
                size = module.graph.call_function(operator.mul, (batch, shape[dim]))
        shape[dim] = size
        node.args = (node.args[0], shape, *node.args[2:])
        rewritten += 1
    module.recompile()
    return rewritten
