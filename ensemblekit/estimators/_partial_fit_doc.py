"""The docstring of the classifiers' ``partial_fit``, written once."""

from __future__ import annotations

#: Raised by every ``partial_fit`` after ``set_params`` changed what built the members.
CHANGED_PARAMETERS = (
    "a parameter that built or trained the members (network, optimizer, ``lr``, "
    "number of members, seeds, the method's settings) changed since they were fitted"
)


def classifier_partial_fit_doc(unit: str, summary: str, behaviour: str = "",
                               raises: str = "") -> str:
    """The numpydoc docstring of a classifier's ``partial_fit``.

    Parameters
    ----------
    unit : str
        What one call trains: ``"member"`` or ``"run"``.
    summary : str
        The one-line summary.
    behaviour : str, default=""
        Text on what the method does after the epoch (samples drawn again, ...),
        appended to the shared description.
    raises : str, default=""
        One more clause of the ``ValueError`` paragraph.

    Returns
    -------
    doc : str
        The docstring, indented as a method's.
    """
    extra = f" {behaviour}" if behaviour else ""
    last = f"{CHANGED_PARAMETERS}, or {raises}" if raises else f"or {CHANGED_PARAMETERS}"
    return f"""{summary}

        For data that arrives in pieces, as ``MLPClassifier.partial_fit``: the first
        call builds the {unit}s from their seeds (``classes`` is then required) and
        trains them one epoch; each later call continues every {unit} (weights,
        optimizer state, data order and random draws go on from its epoch count) for
        one epoch on the new rows, in the engine ``fit`` would use.{extra} Early
        stopping does not apply; ``loss_curve_`` and ``n_iter_`` grow by one epoch.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training inputs shaped like those of earlier calls.
        y : array-like of shape (n_samples,)
            Labels, all among ``classes``.
        classes : array-like of shape (n_classes,), default=None
            Every class label; required on the first call, optional later (it must
            then equal ``classes_``).
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights, as in :meth:`fit`, times the ``class_weight`` of each
            row's class. A dict ``class_weight`` applies in every call, also to
            rows that lack some classes. ``class_weight="balanced"`` is refused, as
            in scikit-learn's ``SGDClassifier.partial_fit`` (one call's rows cannot
            give the class frequencies): compute the weights over all classes with
            ``sklearn.utils.class_weight.compute_class_weight("balanced",
            classes=classes, y=y_all)`` and pass them as a dict. A call whose
            weights are all 0 raises, as in scikit-learn (nothing would train).

        Returns
        -------
        self : estimator
            The estimator, trained one more epoch.

        Raises
        ------
        ValueError
            When ``classes`` is missing on the first call, ``y`` holds a label not
            in ``classes``, ``class_weight="balanced"``, every weight of the call
            is 0, ``checkpoint_epochs`` is set, {last}.
        """
