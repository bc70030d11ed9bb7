"""Activation layouts of a grouped network, named and resolved in one place.

A grouped network carries ``M`` members' activations in one of two layouts:

* ``Layout.CHANNELS`` -- channel-grouped ``(B, M * C, *spatial)``: member ``m`` owns
  channels ``m * C`` to ``(m + 1) * C``. Images ``(B, M*C, H, W)``, sequences
  ``(B, M*C, L)`` and flat features ``(B, M*F)``.
* ``Layout.MEMBER_FIRST`` -- ``(M, B, F)``: features of member ``m`` at index ``m``
  (what a batched linear layer produces).

A sequence map ``(B, M*C, L)`` and member-first features ``(M, B, F)`` have the same
rank, so the rank alone cannot tell them apart. Each forward pass of a grouped
network therefore opens a :class:`LayoutContext` holding the number of members and
the batch size, and grouped layers tag the tensors they return with their layout.
:func:`resolve_layout` reads the tag, and for an untagged tensor (the result of a
functional operation in a custom ``forward``) the shape: member-first tensors start
with ``(M, B)``, channel-grouped ones with ``(B, M * C)``; without sequence inputs
every 3-D activation is member-first. A shape that fits both is refused rather than
guessed.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import Tensor

__all__ = ["GroupingError", "Layout", "LayoutContext", "resolve_layout"]


class GroupingError(ValueError):
    """Raised when members cannot be stacked into one grouped network."""


class GroupingLayoutError(GroupingError):
    """An activation whose layout cannot be determined or is not accepted."""


class Layout(enum.Enum):
    """How the members' activations are laid out in one tensor."""

    CHANNELS = "channels"
    MEMBER_FIRST = "member-first"


class LayoutContext:
    """The number of members, the batch size and the tags of one forward pass.

    Parameters
    ----------
    n_members : int
        Number of members ``M``.
    sequence_maps : bool, default=False
        Whether channel-grouped 3-D maps ``(B, M*C, L)`` can occur (sequence inputs).
        Without them every 3-D activation is member-first.
    """

    def __init__(self, n_members: int, sequence_maps: bool = False) -> None:
        self.n_members = int(n_members)
        self.sequence_maps = bool(sequence_maps)
        self.batch: int | None = None
        self._tags: dict[int, tuple[Layout, weakref.ref[Tensor]]] = {}

    @contextmanager
    def forward(self, batch: int) -> Iterator[LayoutContext]:
        """The scope of one forward pass over batches of ``batch`` rows per member."""
        self.batch = int(batch)
        self._tags = {}
        try:
            yield self
        finally:
            self.batch = None
            self._tags = {}

    def tag(self, x: Tensor, layout: Layout) -> Tensor:
        """Record the layout of ``x`` (a grouped layer's output) and return ``x``."""
        if self.batch is not None:
            # A weak reference: the tag must not keep activations alive for the whole
            # forward pass (memory), and a dead one cannot match a new tensor that
            # reuses its id.
            self._tags[id(x)] = (layout, weakref.ref(x))
        return x

    def tagged(self, x: Tensor) -> Layout | None:
        entry = self._tags.get(id(x))
        return entry[0] if entry is not None and entry[1]() is x else None


def resolve_layout(x: Tensor, ctx: LayoutContext,
                   accepts: Iterable[Layout] = tuple(Layout)) -> Layout:
    """The layout of an activation ``x`` inside a grouped forward pass.

    Raises
    ------
    GroupingLayoutError
        When the layout is ambiguous or not one of ``accepts``.
    """
    accepts = tuple(accepts)
    layout = ctx.tagged(x)
    if layout is None:
        m, b = ctx.n_members, ctx.batch
        if x.dim() < 2:
            raise GroupingLayoutError(f"an activation of shape {tuple(x.shape)} has no "
                                      "member axis")
        if b is None:  # called outside a grouped forward pass: rank is all there is
            layout = Layout.MEMBER_FIRST if x.dim() == 3 else Layout.CHANNELS
        else:
            member_first = x.dim() == 3 and x.shape[0] == m and x.shape[1] == b
            channels = x.shape[0] == b and x.shape[1] % m == 0
            if x.dim() == 3 and not ctx.sequence_maps:
                channels = False
            if member_first and channels:
                raise GroupingLayoutError(
                    f"the layout of an activation of shape {tuple(x.shape)} is ambiguous "
                    f"with {m} members and batches of {b}"
                )
            if not (member_first or channels):
                raise GroupingLayoutError(
                    f"an activation of shape {tuple(x.shape)} is in no member layout "
                    f"({m} members, batches of {b})"
                )
            layout = Layout.MEMBER_FIRST if member_first else Layout.CHANNELS
    if layout not in accepts:
        raise GroupingLayoutError(
            f"a {layout.value} activation reached a layer accepting only "
            f"{', '.join(a.value for a in accepts)}"
        )
    return layout
