"""Stacked members evaluated with ``torch.func.vmap``: the fallback for ungroupable layers."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ._grouped import GroupingError
from ._randomness import MemberStream

__all__ = ["VmapNetwork"]


class VmapNetwork(nn.Module):
    """``M`` member networks with stacked parameters, evaluated through ``vmap``.

    Slower than a :class:`~ensemblekit.engine.GroupedNetwork` (about half the
    throughput of a grouped network in measurements) but it accepts any layer
    that ``vmap`` supports. Networks with buffers (BatchNorm running statistics)
    are refused: ``vmap`` cannot update them in place per member.

    Random draws in training (``nn.Dropout``, ``F.dropout``, noise such as
    ``torch.randn_like`` or an in-place ``normal_``) cannot be split by member inside
    one ``vmap`` call: ``vmap(randomness="different")`` draws every member's numbers
    from one global stream, so a member's masks would depend on which members share
    its pass. Once :meth:`set_training_seeds` is called, a training forward pass is
    therefore tried under ``vmap(randomness="error")``; a network that draws random
    numbers runs member by member instead, each member under its own
    :class:`~ensemblekit.engine._randomness.MemberStream`, which continues exactly the
    stream the sequential engine gives the member. Such members are the sequential
    engine's members, whatever the grouping.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        The members (identical architectures). They are not modified.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> members = [nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)) for _ in range(3)]
    >>> net = VmapNetwork(members)
    >>> x = torch.randn(3, 6, 3)
    >>> bool(torch.allclose(net(x)[2], members[2](x[2]), atol=1e-6))
    True
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        modules = list(modules)
        buffers = [name for name, _ in modules[0].named_buffers()]
        if buffers:
            raise GroupingError(
                f"vmap cannot update per-member buffers ({', '.join(buffers[:3])}...)"
            )
        params, _ = stack_module_state(modules)
        self.n_members = len(modules)
        self.names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[k].detach().clone())
                                         for k in self.names])
        # The template is kept out of the module tree: its own weights are never used.
        self._template = [copy.deepcopy(modules[0]).to("meta")]
        self._streams: list[MemberStream] | None = None
        #: Whether training forward passes run member by member (they draw random numbers).
        self.member_by_member = False
        self.train(modules[0].training)

    def set_training_seeds(self, seeds: Sequence[int] | None) -> None:
        """Draw member ``m``'s training randomness from a stream seeded by ``seeds[m]``.

        ``None`` returns to one ``vmap(randomness="different")`` call over torch's
        global generator (draws then depend on the grouping).

        Parameters
        ----------
        seeds : sequence of int or None
            One training seed per member, or ``None``.

        Raises
        ------
        ValueError
            If the number of seeds is not the number of members.
        """
        if seeds is None:
            self._streams = None
            return
        if len(seeds) != self.n_members:
            raise ValueError(f"need {self.n_members} seeds, got {len(seeds)}")
        device = self.stacked[0].device if len(self.stacked) else torch.device("cpu")
        self._streams = [MemberStream(int(s), device) for s in seeds]

    def named_member_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Pair each member parameter name with the stacked parameter holding it.

        Returns
        -------
        list of (str, torch.nn.Parameter)
            ``(member parameter name, stacked parameter)`` pairs.
        """
        return list(zip(self.names, self.stacked))

    def forward(self, x: Tensor) -> Tensor:
        template = self._template[0]
        template.train(self.training)

        def one(params: dict[str, Tensor], xm: Tensor) -> Tensor:
            return functional_call(template, params, (xm,))

        params = dict(zip(self.names, self.stacked))
        if not (self.training and self._streams is not None):
            return vmap(one, randomness="different")(params, x)
        if not self.member_by_member:
            try:
                return vmap(one, randomness="error")(params, x)
            except RuntimeError as exc:
                # Raised at the first random operation, before anything was drawn.
                if "random" not in str(exc):
                    raise
                self.member_by_member = True
        outputs = []
        for m, stream in enumerate(self._streams):
            with stream.active():
                own = {name: p[m] for name, p in params.items()}
                outputs.append(functional_call(template, own, (x[m],)))
        return torch.stack(outputs)

    @torch.no_grad()
    def write_members(self, modules: Sequence[nn.Module]) -> None:
        """Copy the stacked parameters back into each member, in place.

        Parameters
        ----------
        modules : sequence of torch.nn.Module
            The members, in member order.
        """
        for m, module in enumerate(modules):
            own = dict(module.named_parameters())
            for name, stacked in zip(self.names, self.stacked):
                own[name].copy_(stacked[m])

    def member_slice(self, tensor: Tensor, m: int, member_shape: torch.Size) -> Tensor:
        """Member ``m``'s part of a stacked tensor (or a shared one).

        Parameters
        ----------
        tensor : torch.Tensor
            A stacked parameter, buffer or optimizer state.
        m : int
            Member index.
        member_shape : torch.Size
            Shape of the tensor in one member.

        Returns
        -------
        torch.Tensor
            A view of shape ``member_shape``.
        """
        if tensor.numel() == self.n_members * member_shape.numel():
            return tensor.reshape(self.n_members, *member_shape)[m]
        return tensor.reshape(member_shape)
