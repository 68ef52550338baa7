"""A user's script, for the type checkers (tests/test_typing.py runs mypy
--strict and pyright on it): README-like calls of the public API, the
layers and the notebook names, with the types they give back checked by
``assert_type``.  It also runs (``python tests/typecheck/user_script.py``)."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
from numpy.typing import NDArray

import convx
from convx import _input_grad, _output, _param_grad, conv_1d, conv_1d_sum
from convx.layers import Conv1D, Conv1D_Op, Conv2D, Conv2D_Op

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # typing_extensions, which mypy and pyright ship, has it for 3.10
    from typing_extensions import assert_type

rng = np.random.default_rng(0)

# --- the public API, float32 in, float32 out (README, "The public API") ---
x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
b = np.zeros(8, np.float32)

y = convx.conv2d(x, w, b, stride=1, padding="same")
assert_type(y, NDArray[np.float32])
g = np.ones_like(y)
dx = convx.conv2d_input_grad(x.shape, w, g, padding="same")
dw = convx.conv2d_weight_grad(x, w.shape, g, padding="same")
db = convx.conv2d_bias_grad(g)
assert_type(dx, NDArray[np.float32])
assert_type(dw, NDArray[np.float32])
assert_type(db, NDArray[np.float32])

# strides, paddings and dilations as ints or tuples, 'valid', a method, groups
y2 = convx.conv2d(x, w, stride=(2, 1), padding=(1, 0), dilation=2, method="gemm")
y3 = convx.conv2d(x, rng.standard_normal((6, 1, 3, 3)).astype(np.float32), groups=3,
                  padding="valid")
assert_type(y2, NDArray[np.float32])
assert_type(y3, NDArray[np.float32])

# float64 stays float64
x64 = rng.standard_normal((2, 3, 10, 10))
w64 = rng.standard_normal((4, 3, 5, 5))
assert_type(convx.conv2d(x64, w64, padding=2), NDArray[np.float64])
assert_type(convx.conv2d_bias_grad(np.ones((2, 4, 10, 10))), NDArray[np.float64])

# integers compute and return float64; float16 comes back float16
xi = np.arange(16).reshape(1, 1, 4, 4)
wi = np.ones((1, 1, 3, 3), dtype=np.int64)
assert_type(convx.conv2d(xi, wi), NDArray[np.float64])
x16 = np.ones((1, 1, 4, 4), np.float16)
assert_type(convx.conv2d(x16, np.ones((1, 1, 3, 3), np.float16)), NDArray[np.float16])

# 1-D, batched and unbatched
sig = rng.standard_normal((2, 1, 50)).astype(np.float32)
k = rng.standard_normal((4, 1, 5)).astype(np.float32)
z = convx.conv1d(sig, k, padding="same")
assert_type(z, NDArray[np.float32])
assert_type(convx.conv1d(np.ones((1, 50), np.float32), k), NDArray[np.float32])
assert_type(convx.conv1d_input_grad(sig.shape, k, np.ones_like(z), padding="same"),
            NDArray[np.float32])
assert_type(convx.conv1d_weight_grad(sig, (4, 1, 5), np.ones_like(z), padding=2),
            NDArray[np.float32])
assert_type(convx.conv1d_bias_grad(z), NDArray[np.float32])

# an array whose dtype the checker does not know gives an array (the overload
# mypy and pyright pick for it differs: the result is only known to be an array)
anything: NDArray[Any] = np.asarray(x)
unknown: NDArray[Any] = convx.conv2d(anything, anything)

# threads and errors
convx.set_num_threads(1)
n: int = convx.get_num_threads()
convx.set_num_threads(None)
message = ""
try:
    convx.conv2d(x, w, padding="same", stride=2)
except convx.ConvxValueError as err:
    message = str(err)

# --- layers (README, "Train a network") ---
conv = Conv2D(3, 16, 5, padding=2, rng=0)
assert_type(conv, Conv2D[np.float32])
out = conv.forward(x)
assert_type(out, NDArray[np.float32])
grad_in = conv.backward(np.ones_like(out))
assert_type(grad_in, NDArray[np.float32])
assert_type(conv.backward(np.ones_like(out), input_grad=False), None)
assert_type(conv.weight_grad, NDArray[np.float32] | None)
for param, param_grad in conv.parameters():
    if param_grad is not None:
        param -= 0.01 * param_grad

conv64 = Conv1D(1, 4, 5, stride=2, dtype=np.float64, rng=np.random.default_rng(1))
assert_type(conv64, Conv1D[np.float64])
assert_type(conv64(rng.standard_normal((2, 1, 40))), NDArray[np.float64])
same = Conv2D(3, 8, 3, padding="same", bias=False)
assert_type(same(x), NDArray[np.float32])

op = Conv2D_Op(np.ones((3, 2, 3, 3)))
op_out: NDArray[Any] = op.forward(x64)
op_grad = op.backward(np.ones_like(op_out))
op1 = Conv1D_Op(np.ones((1, 1, 3)))
op1.forward(np.array([[[1.0, 2.0, 3.0, 4.0]]]))

# --- the notebook's names (README, "Drop-in for the notebook") ---
cifar_imgs = rng.standard_normal((10, 3, 32, 32))
cifar_param = rng.standard_normal((3, 16, 5, 5))
nb_out = _output(cifar_imgs, cifar_param)
d_imgs = _input_grad(cifar_imgs, np.ones((10, 16, 32, 32)), cifar_param)
d_param = _param_grad(cifar_imgs, np.ones((10, 16, 32, 32)), cifar_param)
assert_type(nb_out, NDArray[np.float64])
assert_type(d_imgs, NDArray[np.float64])
assert_type(d_param, NDArray[np.float64])
assert_type(_output(cifar_imgs.astype(np.float32), cifar_param.astype(np.float32)),
            NDArray[np.float32])
assert_type(conv_1d(np.ones(5), np.ones(3)), NDArray[np.float64])
assert_type(conv_1d_sum(np.ones(5, np.float32), np.ones(3, np.float32)), np.float32)
assert_type(convx._pad_1d(np.arange(3), 2), NDArray[Any])
assert_type(convx._param_grad_1d(np.ones(5), np.ones(3)), NDArray[np.float64])
assert_type(convx._compute_output_sum(cifar_imgs, cifar_param), np.float64)
convx.assert_same_shape(nb_out, nb_out)
convx.assert_dim(nb_out, 4)

print("ok", y.shape, dx.shape, dw.shape, db.shape, n, message[:20], out.dtype,
      grad_in.shape, op_grad.shape, d_param.shape)
