"""What is specific to regression: real targets, Gaussian heads, the predictive mixture."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import validate_data
from skorch import NeuralNetRegressor

from ..engine import GaussianNLLCriterion, SquaredErrorCriterion
from ..engine._losses import DEFAULT_MIN_VARIANCE
from ._base import BaseNeuralEnsemble, _as_float32
from ._probe import probe_outputs
from ._validation import check_option

RegressionLoss = Literal["gaussian_nll", "squared_error"]
LOSSES: tuple[str, ...] = ("gaussian_nll", "squared_error")

# Output kinds of a regression member: a Gaussian head (means, then raw variances) or
# means alone.
_KIND = {"gaussian_nll": "mean_variance", "squared_error": "mean"}


class BaseNeuralRegressor(RegressorMixin, BaseNeuralEnsemble):
    r"""Base class of the ensemble regressors.

    Adds to the shared base of every estimator (its classifier counterpart is
    :class:`~ensemblekit.estimators.BaseNeuralClassifier`) what
    is specific to regression; subclasses declare ``loss`` and ``normalize_y``.

    **Members.** With ``loss="gaussian_nll"`` each member network returns
    ``2 * n_targets`` values per row: the means, then raw variances turned into
    :math:`\sigma^2 = \mathrm{softplus}(raw) + 10^{-6}` (in standardised units), and
    is trained on the Gaussian negative log-likelihood
    (:class:`~ensemblekit.engine.GaussianNLLCriterion`, Lakshminarayanan et al.,
    2017). With ``loss="squared_error"`` it returns ``n_targets`` means trained on the
    mean squared error, and has no variance of its own (its ``std`` is 0).

    **Target scaling.** With ``normalize_y=True`` each target column is standardised
    inside :meth:`fit` (``(y - y_mean_) / y_std_``, a column of zero spread is only
    centred), the members are trained on the standardised targets, and every
    prediction is mapped back: means as ``mu * y_std_ + y_mean_``, standard
    deviations as ``sigma * y_std_``. This is what
    :class:`~sklearn.compose.TransformedTargetRegressor` with a
    :class:`~sklearn.preprocessing.StandardScaler` would do, carried through to the
    predicted variances.

    **Predictive distribution.** The members (or posterior samples) form an equally
    weighted mixture of Gaussians :math:`\frac1M\sum_m N(\mu_m, \sigma_m^2)`.
    :meth:`predict` returns its mean :math:`\bar\mu = \frac1M\sum_m \mu_m` and, with
    ``return_std=True``, its standard deviation

    .. math:: \sigma^2 = \underbrace{\tfrac1M \textstyle\sum_m \sigma_m^2}_{aleatoric}
              + \underbrace{\tfrac1M \textstyle\sum_m (\mu_m - \bar\mu)^2}_{epistemic},

    Lakshminarayanan et al. (2017), Sec. 2.4.
    """

    # Weighted fits give the criterion [targets, weight] rows (engine/_losses.py).
    _criterion_reads_weights = True
    # MLPRegressor's validation score.
    _validation_score = "r2"

    # ----------------------------------------------------------- parameters
    def _validate_params(self) -> None:
        self._validate_params_common()
        check_option("loss", self.loss, LOSSES)
        if not isinstance(self.normalize_y, (bool, np.bool_)):
            raise ValueError(f"normalize_y must be True or False, got {self.normalize_y!r}.")
        for key in self._routed_params():
            if key.startswith("criterion__"):
                raise ValueError(
                    f"{key} cannot be set: the regressors build their criterion from "
                    f"loss={self.loss!r} (one of {list(LOSSES)})."
                )
        self._validate_method_params()

    def _validate_method_params(self) -> None:
        """Checks of the method's own parameters (shared with its classifier)."""

    # ----------------------------------------------------------- task hooks
    def _validate_training_data(
        self, X: Any, y: Any, reset: bool, subset: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        if not reset:
            self._check_image_shape(X)
        X, y = validate_data(
            self, X, y, reset=reset, allow_nd=True, dtype=(np.float32, np.float64),
            ensure_all_finite=True, multi_output=True, y_numeric=True,
        )
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 0:
            raise ValueError("y must have at least one target column, got shape "
                             f"{y.shape}.")
        y2 = y.reshape(len(y), -1)
        X = _as_float32(X)
        if reset:
            self.input_shape_ = tuple(X.shape[1:])
            self.n_targets_ = int(y2.shape[1])
            self._y_ndim = y.ndim
            if self.normalize_y:
                mean = y2.mean(axis=0)
                std = y2.std(axis=0)
                # A constant column is only centred: dividing by ~0 would blow it up.
                std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
            else:
                mean = np.zeros(y2.shape[1])
                std = np.ones(y2.shape[1])
            self.y_mean_, self.y_std_ = mean, std
        else:
            self._check_input_shape(X)
            if y2.shape[1] != self.n_targets_:
                what = "partial_fit" if subset else "warm_start=True"
                raise ValueError(
                    f"{what} needs the {self.n_targets_} target(s) of the first fit, "
                    f"got y with {y2.shape[1]}."
                )
        return X, ((y2 - self.y_mean_) / self.y_std_).astype(np.float32)

    def _n_outputs(self) -> int:
        return self.n_targets_ * (2 if self.loss == "gaussian_nll" else 1)

    def _member_criterion(self) -> Any:
        if self.loss == "gaussian_nll":
            return GaussianNLLCriterion
        return SquaredErrorCriterion

    def _net_class(self) -> type:
        return NeuralNetRegressor

    def _probe(self, net: Any, seed: int, X: np.ndarray) -> str:
        width = self._n_outputs()
        name = "2 * n_targets" if self.loss == "gaussian_nll" else "n_targets"
        out = probe_outputs(net, seed, X, name, width)
        if out.shape[1] != width:
            what = ("the means and then the raw variances of each target"
                    if self.loss == "gaussian_nll" else "one mean per target")
            raise ValueError(
                f"The module {type(net.module_).__name__} returns {out.shape[1]} outputs per "
                f"sample, but loss={self.loss!r} with {self.n_targets_} target(s) needs "
                f"{width}: {what} (a module class with a num_classes argument gets it from "
                "the data unless module__num_classes is routed)."
            )
        return _KIND[self.loss]

    # ----------------------------------------------------------- prediction
    def _member_moments(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Means and variances of every member in target units, each (M, N, n_targets)."""
        X = self._validate_predict_data(X)
        out = self._member_logits(X).astype(np.float64)
        t = self.n_targets_
        if self.output_kind_ == "mean_variance":
            mean = out[..., :t]
            var = np.logaddexp(0.0, out[..., t:]) + DEFAULT_MIN_VARIANCE
        else:
            mean = out
            var = np.zeros_like(out)
        return mean * self.y_std_ + self.y_mean_, var * self.y_std_**2

    def _shape_targets(self, values: np.ndarray) -> np.ndarray:
        # One target given as a 1-D y comes back 1-D, as in scikit-learn.
        return values[..., 0] if self._y_ndim == 1 else values

    def predict_member(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of every member (or posterior sample).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs shaped like the training inputs.

        Returns
        -------
        mean : ndarray of shape (n_members, n_samples) or (n_members, n_samples, n_targets)
            Each member's predicted mean, in the units of ``y``; the second form when
            ``y`` was 2-D.
        std : ndarray of the same shape
            Each member's predicted standard deviation (its aleatoric noise); 0 for
            ``loss="squared_error"``.
        """
        mean, var = self._member_moments(X)
        return self._shape_targets(mean), self._shape_targets(np.sqrt(var))

    def predict(self, X: Any, return_std: bool = False) -> Any:
        """Mean of the predictive mixture, and optionally its standard deviation.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs shaped like the training inputs.
        return_std : bool, default=False
            Also return the mixture's standard deviation, which adds the mean of the
            member variances (aleatoric) and the variance of the member means
            (epistemic), as :class:`~sklearn.gaussian_process.GaussianProcessRegressor`
            returns its predictive std.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Mean of the member means.
        y_std : ndarray of the same shape
            Only with ``return_std=True``.
        """
        mean, var = self._member_moments(X)
        mix_mean = mean.mean(axis=0)
        if not return_std:
            return self._shape_targets(mix_mean)
        mix_var = var.mean(axis=0) + mean.var(axis=0)
        return self._shape_targets(mix_mean), self._shape_targets(np.sqrt(mix_var))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
