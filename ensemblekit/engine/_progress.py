"""Progress reporting for long fits (members x epochs)."""

from __future__ import annotations

from typing import Any

from skorch.callbacks import Callback


class Progress:
    """A progress bar counting member-epochs, silent when ``enabled`` is false.

    Parameters
    ----------
    total : int
        Number of member-epochs to run.
    enabled : bool
        Whether to draw the bar (on standard error, through tqdm).
    desc : str, default="member-epochs"
        Label shown before the bar.
    """

    def __init__(self, total: int, enabled: bool, desc: str = "member-epochs") -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="ep", leave=True)

    def advance(self, n: int = 1, **postfix: Any) -> None:
        """Count ``n`` finished member-epochs and show ``postfix`` values.

        Parameters
        ----------
        n : int, default=1
            Member-epochs finished.
        **postfix : dict
            Values shown after the bar (for instance the latest training loss).
        """
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)

    def finish(self) -> None:
        """Mark the work done: member-epochs planned but not run leave the total.

        Members that stop early (early stopping) run fewer epochs than planned;
        the finished bar then counts what ran and says how many were not needed.
        """
        bar = self._bar
        if bar is not None and bar.total is not None and bar.n < bar.total:
            skipped = bar.total - bar.n
            bar.total = bar.n
            bar.set_postfix_str(f"stopped early, {skipped} planned member-epochs not run",
                                refresh=False)
            bar.refresh()

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ProgressCallback(Callback):
    """Advance a :class:`Progress` at the end of each epoch (a skorch callback).

    Parameters
    ----------
    progress : Progress
        The progress bar shared by all members.
    member : int
        Index of the member this callback's net trains.
    """

    def __init__(self, progress: Progress, member: int) -> None:
        self.progress = progress
        self.member = member

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        loss = net.history[-1].get("train_loss")
        postfix = {"member": self.member}
        if loss is not None:
            postfix["loss"] = f"{loss:.4f}"
        valid = net.history[-1].get("valid_acc", net.history[-1].get("valid_r2"))
        if valid is not None:
            postfix["valid"] = f"{valid:.4f}"
        self.progress.advance(1, **postfix)

    def __getstate__(self) -> dict[str, Any]:
        # The bar is a live terminal object: a pickled member keeps no reference to it.
        state = dict(self.__dict__)
        state["progress"] = Progress(0, enabled=False)
        return state
