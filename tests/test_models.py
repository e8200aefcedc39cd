"""Tests of skpoison.models: the paper's torch modules and the seeded skorch classifier."""

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from skpoison.datasets import load_digits
from skpoison.models import (
    CNN,
    MLP,
    NETS,
    LogisticRegressionNet,
    ResNet,
    SeededNeuralNetClassifier,
    infer_image_shape,
    make_net,
    resnet18,
    resnet34,
)
from skpoison.objectives import as_objective, last_linear_layer

F64 = dict(device="cpu", dtype="float64")

# tiny versions of every module on 8x8 single-channel images (64 features)
TINY = {
    "logreg": dict(),
    "mlp": dict(hidden_size=16),
    "cnn": dict(hidden_size=16, module__channels=(4, 8)),
    "resnet18": dict(width=4),
    "resnet34": dict(width=2),
}


def tiny_module(name, n_classes=3, dtype=None):
    if name == "logreg":
        return LogisticRegressionNet(64, n_classes, dtype=dtype)
    if name == "mlp":
        return MLP(64, n_classes, hidden_size=16, dtype=dtype)
    if name == "cnn":
        return CNN((1, 8, 8), n_classes, hidden_size=16, channels=(4, 8), dtype=dtype)
    if name == "resnet18":
        return resnet18((1, 8, 8), n_classes, width=4, dtype=dtype)
    return resnet34((1, 8, 8), n_classes, width=2, dtype=dtype)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200], y[:200]


# ------------------------------------------------------------------------ modules


@pytest.mark.parametrize("name", NETS)
def test_module_outputs_logits_of_the_right_shape(name):
    module = tiny_module(name).eval()
    out = module(torch.rand(5, 64))
    assert out.shape == (5, 3)
    # the final layer is a Linear producing exactly these logits
    head = dict(module.named_modules())[last_linear_layer(module)]
    assert isinstance(head, torch.nn.Linear) and head.out_features == 3
    seen = []
    handle = head.register_forward_hook(lambda m, i, o: seen.append(o))
    out = module(torch.rand(5, 64))
    handle.remove()
    assert torch.equal(seen[0], out)


def test_last_linear_layer_names():
    expected = {"logreg": "linear", "mlp": "fc3", "cnn": "fc2", "resnet18": "fc", "resnet34": "fc"}
    for name, layer in expected.items():
        assert last_linear_layer(tiny_module(name)) == layer


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_flat_rows_are_reshaped_to_images(name):
    module = tiny_module(name).eval()
    X = torch.rand(4, 64)
    np.testing.assert_array_equal(
        module(X).detach().numpy(), module(X.reshape(4, 1, 8, 8)).detach().numpy()
    )


def test_three_channel_images_and_paper_sizes():
    cnn = CNN()  # MNIST: (1, 28, 28), channels (32, 64), hidden 128
    assert cnn.fc1.in_features == 64 * 12 * 12 and cnn.fc1.out_features == 128
    assert MLP().fc2.in_features == 784 and MLP().negative_slope == 0.2
    assert LogisticRegressionNet().linear.weight.shape == (10, 784)
    net = ResNet((1, 1, 1, 1), image_shape=(3, 8, 8), n_classes=4, width=2).eval()
    assert net(torch.rand(2, 3 * 64)).shape == (2, 4)
    assert resnet34().block_counts == (3, 4, 6, 3)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in resnet18().modules()) == 20


@pytest.mark.parametrize("name", NETS)
def test_wrong_row_length_raises(name):
    with pytest.raises(ValueError, match="expects rows of 64 features, got 63"):
        tiny_module(name).eval()(torch.rand(2, 63))


def test_module_argument_errors():
    with pytest.raises(ValueError, match="at least 6 x 6"):
        CNN(image_shape=(1, 5, 5))
    with pytest.raises(ValueError, match="three positive ints"):
        CNN(image_shape=(8, 8))
    with pytest.raises(ValueError, match="block_counts"):
        ResNet(block_counts=(2, 0))


def test_infer_image_shape():
    assert infer_image_shape(784) == (1, 28, 28)
    assert infer_image_shape(3072) == (3, 32, 32)
    assert infer_image_shape(64) == (1, 8, 8)
    with pytest.raises(ValueError, match="image_shape"):
        infer_image_shape(10)


def test_dtype_argument():
    for name in NETS:
        module = tiny_module(name, dtype=torch.float64)
        assert all(p.dtype == torch.float64 for p in module.parameters())
        assert all(b.dtype == torch.float64 for b in module.buffers() if b.is_floating_point())


# ------------------------------------------------------------------------ factories


def test_make_net_configuration():
    net = make_net("mlp", n_features=64, n_classes=10, random_state=3, device="cpu")
    assert isinstance(net, SeededNeuralNetClassifier)
    assert net.criterion is torch.nn.CrossEntropyLoss
    assert net.train_split is None and net.verbose == 0
    assert net.iterator_train__shuffle is True
    assert net.optimizer is torch.optim.SGD and net.optimizer__momentum == 0.9
    assert net.module is MLP and net.module__hidden_size == 784
    assert net.random_state == 3 and net.device == "cpu"
    assert make_net("nn", device="cpu").module is MLP
    assert make_net("cnn", n_features=784, device="cpu").module__image_shape == (1, 28, 28)
    assert make_net("resnet34", device="cpu").module__block_counts == (3, 4, 6, 3)
    adam = make_net("logreg", optimizer="adam", weight_decay=1e-3, device="cpu")
    assert adam.optimizer is torch.optim.Adam and adam.optimizer__weight_decay == 1e-3
    assert not hasattr(adam, "optimizer__momentum")
    auto = make_net("logreg")
    assert auto.device == str(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="vgg"), "Unknown net"),
        (dict(name="resnet18", hidden_size=3), "hidden_size does not apply"),
        (dict(name="mlp", width=3), "width applies to the ResNets"),
        (dict(name="mlp", optimizer="rmsprop"), "optimizer must be"),
        (dict(name="mlp", batch_size=0), "batch_size"),
    ],
)
def test_make_net_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_net(**kwargs)


@pytest.mark.parametrize("name", NETS)
def test_every_net_fits_and_infers_its_dimensions(name, digits):
    X, y = digits
    net = make_net(name, max_epochs=1, random_state=0, device="cpu", **TINY[name])
    net.fit(X[:64], y[:64])
    assert net.n_features_in_ == 64
    assert net.predict_proba(X[:5]).shape == (5, 10)
    head = dict(net.module_.named_modules())[last_linear_layer(net.module_)]
    assert head.out_features == 10


def test_uninferable_dimension_raises():
    net = make_net("mlp", hidden_size=4, device="cpu")
    with pytest.raises(ValueError, match="module__n_features is None"):
        net.initialize()


def test_reproducible_under_random_state(digits):
    X, y = digits
    net = make_net("mlp", hidden_size=16, max_epochs=3, random_state=0, device="cpu")
    state = torch.get_rng_state()
    fitted = clone(net).fit(X, y)
    # fitting leaves the global torch RNG as it was
    assert torch.equal(state, torch.get_rng_state())
    a = fitted.predict_proba(X)
    b = clone(net).fit(X, y).predict_proba(X)
    net.fit(X, y)
    c = net.predict_proba(X)
    d = net.fit(X, y).predict_proba(X)  # refitting re-initialises with the same seed
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(a, d)
    other = clone(net).set_params(random_state=1).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, other)
    # a RandomState instance works too (and clone copies it)
    rs = make_net("mlp", hidden_size=16, max_epochs=3, device="cpu",
                  random_state=np.random.RandomState(5))
    np.testing.assert_array_equal(
        clone(rs).fit(X, y).predict_proba(X), clone(rs).fit(X, y).predict_proba(X)
    )


def test_random_state_none_uses_global_torch_rng(digits):
    X, y = digits
    net = make_net("logreg", max_epochs=2, device="cpu")
    torch.manual_seed(7)
    a = clone(net).fit(X, y).predict_proba(X)
    torch.manual_seed(7)
    b = clone(net).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_float64_and_float32_inputs(digits):
    X, y = digits
    assert X.dtype == np.float64
    net = make_net("cnn", max_epochs=1, random_state=0, device="cpu", **TINY["cnn"]).fit(X, y)
    np.testing.assert_array_equal(
        net.predict_proba(X), net.predict_proba(X.astype(np.float32))
    )
    np.testing.assert_array_equal(net.predict_proba(X), net.predict_proba(torch.as_tensor(X)))
    assert net.score(X, y) == pytest.approx(np.mean(net.predict(X) == y))
    # lists of rows and int labels given as a column work as well
    net.fit(X[:32].tolist(), y[:32].reshape(-1, 1))
    # a float64 module gets float64 inputs
    net64 = make_net("mlp", hidden_size=4, max_epochs=1, random_state=0, device="cpu",
                     module__dtype=torch.float64).fit(X, y)
    assert net64.module_.fc1.weight.dtype == torch.float64
    assert net64.predict_proba(X).dtype == np.float64


def test_bad_inputs_raise_clear_errors(digits):
    X, y = digits
    net = make_net("logreg", max_epochs=1, random_state=0, device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="X has 63 features"):
        net.predict(X[:, :63])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clone(net).fit(bad, y)
    with pytest.raises(ValueError, match="labels \\[42\\]"):
        net.partial_fit(X[:3], np.array([0, 1, 42]))


def test_any_class_labels(digits):
    X, y = load_digits(digits=(1, 7), return_X_y=True)
    net = make_net("mlp", hidden_size=8, max_epochs=10, lr=0.1, random_state=0, device="cpu")
    net.fit(X, y)
    np.testing.assert_array_equal(net.classes_, [1, 7])
    assert set(np.unique(net.predict(X))) <= {1, 7}
    assert net.score(X, y) > 0.9
    assert net.module_.fc3.out_features == 2
    # the objective maps the labels to the module's outputs the same way
    obj = as_objective(net, **F64)
    np.testing.assert_array_equal(obj.encode_labels(np.array([7, 1])).numpy(), [1, 0])
    # string labels
    names = np.where(y == 1, "one", "seven")
    snet = clone(net).fit(X, names)
    np.testing.assert_array_equal(snet.classes_, ["one", "seven"])
    assert (snet.predict(X) == names).mean() > 0.9
    # the classes of the first fit are kept by partial_fit on a subset of them
    snet.partial_fit(X[:5], np.full(5, "one"))
    np.testing.assert_array_equal(snet.classes_, ["one", "seven"])


def test_explicit_classes_and_validation_split(digits):
    from skorch.dataset import ValidSplit

    X, y = load_digits(return_X_y=True)
    y = y + 10  # labels 10..19
    net = SeededNeuralNetClassifier(
        MLP, module__n_features=None, module__n_classes=None, module__hidden_size=16,
        classes=np.arange(19, 9, -1), max_epochs=20, lr=0.1, verbose=0, random_state=0,
        train_split=ValidSplit(4, stratified=True),
    )
    net.fit(X, y)
    assert net.module_.fc3.out_features == 10
    np.testing.assert_array_equal(net.classes_, np.arange(19, 9, -1))
    assert set(np.unique(net.predict(X))) <= set(range(10, 20))
    # skorch's validation accuracy compares predicted labels with the labels (not
    # with output indices): it is as high as the accuracy on all the data
    assert net.history[-1, "valid_acc"] > 0.6
    assert abs(net.history[-1, "valid_acc"] - net.score(X, y)) < 0.1


def test_partial_fit_and_warm_start(digits):
    X, y = digits
    net = make_net("mlp", hidden_size=8, max_epochs=2, random_state=0, device="cpu")
    net.partial_fit(X, y)
    assert net.initialized_ and net.n_features_in_ == 64
    first = net.predict_proba(X)
    net.partial_fit(X, y, epochs=1)
    assert not np.array_equal(first, net.predict_proba(X))
    warm = clone(net).set_params(warm_start=True).fit(X, y)
    params = copy.deepcopy(warm.module_.state_dict())
    warm.fit(X, y)  # continues: the module is not re-initialised
    assert any(
        not torch.equal(params[k], v) for k, v in warm.module_.state_dict().items()
    )


def test_sklearn_compatibility(digits):
    X, y = digits
    net = make_net("logreg", max_epochs=50, random_state=0, device="cpu")
    assert clone(net).get_params()["random_state"] == 0
    scores = cross_val_score(net, X, y, cv=2)
    assert scores.shape == (2,) and np.all(scores > 0.8)
    assert net.__sklearn_tags__().input_tags.sparse is False
    assert net.__sklearn_tags__().estimator_type == "classifier"


# ------------------------------------------------------- adapter: vanishing gradient

_LBFGS = dict(
    module__dtype=torch.float64,
    optimizer=torch.optim.LBFGS,
    lr=1.0,
    batch_size=-1,
    max_epochs=8,
    optimizer__line_search_fn="strong_wolfe",
    optimizer__tolerance_grad=1e-10,
    optimizer__tolerance_change=0.0,
    optimizer__max_iter=100,
    callbacks="disable",
)


@pytest.fixture(scope="module")
def conflicting():
    """Digits 0, 1, 2, each row four times with labels y, y, y+1, y+2 (mod 3).

    No model separates the rows, so cross-entropy has a finite minimiser even
    without a penalty, and full-batch L-BFGS reaches a stationary point.
    """
    X, y = load_digits(digits=(0, 1, 2), return_X_y=True)
    X, y = X[:60], y[:60]
    return np.vstack([X] * 4), np.concatenate([y, y, (y + 1) % 3, (y + 2) % 3])


def perturbed_ratio(net, X, y, scale=1e-2):
    """``||grad F(w)|| / ||grad F(w + delta)||`` with ``||delta|| = scale ||w||``."""
    obj = as_objective(net, **F64)
    at_w = float(obj.objective_gradient(X, y).norm())
    w = obj.flat_params()
    u = torch.as_tensor(np.random.RandomState(0).standard_normal(len(w)))
    moved = as_objective(obj.to_estimator(w + scale * w.norm() * u / u.norm()), **F64)
    return at_w / float(moved.objective_gradient(X, y).norm())


# The logreg case is the fast check of this contract; the deeper nets take seconds
# each (test_adapter_gradient_equals_autograd_on_eval_module checks their adapter
# gradient against autograd, and tests/test_nets.py an MLP at a stationary point).
@pytest.mark.parametrize("name", [
    "logreg",
    pytest.param("mlp", marks=pytest.mark.slow),
    pytest.param("cnn", marks=pytest.mark.slow),
])
def test_adapter_gradient_vanishes_at_trained_net(name, conflicting):
    X, y = conflicting
    net = make_net(name, random_state=0, device="cpu", **{**TINY[name], **_LBFGS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.fit(X, y)
    obj = as_objective(net, **F64)
    assert obj.kind == "cross_entropy" and obj.penalty_form is None
    assert perturbed_ratio(net, X, y) < 1e-2


@pytest.mark.parametrize("name", ["resnet18", "cnn"])
def test_adapter_gradient_equals_autograd_on_eval_module(name, digits):
    """With batch norm (ResNet) the objective is the eval-mode one: check it directly."""
    X, y = digits
    X, y = X[:48], y[:48]
    wd = 1e-3
    net = make_net(name, max_epochs=2, random_state=0, device="cpu", weight_decay=wd,
                   **TINY[name]).fit(X, y)
    running = {k: v.clone() for k, v in net.module_.state_dict().items()}
    obj = as_objective(net, **F64)
    assert obj.penalty_form == "mean"
    got = obj.objective_gradient(X, y)
    module = copy.deepcopy(net.module_).double().eval()
    logits = module(torch.as_tensor(X))
    params = list(module.parameters())
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y), reduction="sum")
    # torch's weight decay adds wd * w to the gradient of the mean loss: per sample
    # that is a penalty 0.5 * wd * ||w||^2 * N on the summed loss (kappa(N) = N)
    loss = loss + len(X) * 0.5 * wd * sum((p**2).sum() for p in params)
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    np.testing.assert_allclose(got.numpy(), expected.detach().numpy(), rtol=1e-7, atol=1e-10)
    # per-sample gradients (torch.func.vmap, batch norm in eval mode) add up to it
    per_sample = obj.per_sample_gradients(X, y)
    np.testing.assert_allclose(
        per_sample.sum(0).numpy(), obj.loss_gradient_sum(X, y).numpy(), rtol=1e-7, atol=1e-10
    )
    batched = obj.loss_gradient_sum(X, y, batch_size=7)
    np.testing.assert_allclose(batched.numpy(), obj.loss_gradient_sum(X, y).numpy(), rtol=1e-9)
    # the net's batch-norm statistics and mode are untouched
    for k, v in net.module_.state_dict().items():
        assert torch.equal(running[k], v)


def test_weight_decay_is_a_mean_form_penalty(conflicting):
    X, y = conflicting
    wd = 1e-2
    net = make_net("logreg", weight_decay=wd, lr=0.5, batch_size=-1, max_epochs=600,
                   module__dtype=torch.float64, random_state=0, device="cpu",
                   callbacks="disable").fit(X, y)
    obj = as_objective(net, **F64)
    n = len(X)
    assert obj.penalty_form == "mean"
    assert obj.kappa(n) == pytest.approx(n * obj.penalty_strength)
    assert obj.kappa(2 * n) == pytest.approx(2 * obj.kappa(n))
    for name, weight in obj.penalty_weights.items():
        np.testing.assert_allclose((obj.penalty_strength * weight).numpy(), wd, err_msg=name)
    assert perturbed_ratio(net, X, y) < 1e-3
    # without the penalty the gradient is far from zero
    full = float(obj.objective_gradient(X, y).norm())
    assert float(obj.loss_gradient_sum(X, y).norm()) > 100 * full


def test_dropout_is_off_in_the_objective(digits):
    X, y = digits
    net = make_net("mlp", hidden_size=16, max_epochs=2, random_state=0, device="cpu",
                   module__dropout=0.5).fit(X, y)
    obj = as_objective(net, **F64)
    first, second = obj.loss_gradient_sum(X, y), obj.loss_gradient_sum(X, y)
    assert torch.equal(first, second)
    np.testing.assert_allclose(
        torch.softmax(obj.outputs(X), 1).numpy(), net.predict_proba(X), rtol=1e-4, atol=1e-6
    )
