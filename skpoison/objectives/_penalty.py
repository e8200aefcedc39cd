"""The L2 penalty of a victim's training objective and how it scales with the data size."""

__all__ = ["Penalty"]


class Penalty:
    """``kappa(N) * R(w)`` with ``R(w) = 0.5 * sum_j r_j w_j^2``.

    Parameters
    ----------
    weights : dict of str to float or array-like, default=None
        Per-parameter weights ``r_j``; parameters not named are unpenalised (e.g. the
        intercepts of most linear models).
    form : {"sum", "mean"} or None, default=None
        ``"sum"``: ``kappa(N) = strength`` (``C * sum l + R``: ``strength = 1/C``);
        ``"mean"``: ``kappa(N) = strength * N`` (``mean l + alpha R``); ``None``: no
        penalty.
    strength : float, default=0.0
        ``1/C`` (sum form) or ``alpha`` (mean form).

    Examples
    --------
    >>> from skpoison.objectives import Penalty
    >>> Penalty({"coef": 1.0}, form="mean", strength=0.01).kappa(200)
    2.0
    """

    def __init__(self, weights=None, *, form=None, strength=0.0):
        if form not in (None, "sum", "mean"):
            raise ValueError(f"form must be 'sum', 'mean' or None, got {form!r}.")
        active = form is not None and bool(strength) and bool(weights)
        self.weights = dict(weights or {}) if active else {}
        self.form = form if active else None
        self.strength = float(strength) if active else 0.0

    def kappa(self, n_samples):
        """Penalty scale ``kappa(N)`` for an objective over ``N`` samples."""
        if self.form == "sum":
            return self.strength
        if self.form == "mean":
            return self.strength * n_samples
        return 0.0

    def __repr__(self):
        return f"Penalty(form={self.form!r}, strength={self.strength!r})"
