"""The learner's notebook code: pure-Python loops, kept as the benchmark baseline.

This module computes nothing for convx. It is the code of the chapter-5 notebook
that convx replaces (Ethan Herron's notebook for *Deep Learning from Scratch*,
by Seth Weidman; the copy read is ``shared/seed/000_289c8cb12a365f73.txt``),
transcribed function by function, loops, names, signatures and bugs included.
``benchmarks/bench_notebook.py`` times convx against these functions, and checks
that both give the same numbers, so they must stay as the notebook wrote them:
do not "fix" or speed them up here.

What was changed, and only this:

* ``_pad_1d`` is defined twice in the notebook (cells 6 and 20, identical);
  it is defined once here.
* Two functions are added, marked "NOT IN THE NOTEBOOK" below:
  ``_compute_output_obs_fixed`` and ``_output_fixed``.  The notebook's
  multi-channel forward ``_compute_output_obs`` takes the filter size from
  ``param.shape[0]`` (the number of input channels) instead of
  ``param.shape[2]``: with the CIFAR example's 3x16x5x5 filter it runs a 3x3
  corner of each 5x5 filter.  That is the "something is wrong with
  _compute_output_sum()" of the notebook's last cell.  convx computes the
  corrected forward, so the fair loop baseline for timing ``_output`` is the
  same loop nest with ``param_size = param.shape[2]``; nothing else differs.
  The buggy original is kept unchanged and is timed for information only.

The loops are slow by design (about 11 s for one pass over the CIFAR-sized
example, 10x3x32x32 input, 3x16x5x5 filter).
"""
import numpy as np
from numpy import ndarray


# --------------------------------------------------------------------------
# Helper objects
# --------------------------------------------------------------------------

def assert_same_shape(output: ndarray, output_grad: ndarray):

    assert output.shape == output_grad.shape, \
    '''
    Two ndarray should have the same shape
    '''.format(tuple(output_grad.shape), tuple(output.shape))
    return None


def assert_dim(t: ndarray, dim: ndarray):

    assert len(t.shape) == dim, \
    '''
    Tensor expected to have dimension{0}, instead has dimension {1}
    '''.format(dim, len(t.shape))
    return None


# --------------------------------------------------------------------------
# 1D Convolution: 1 input, 1 output
# --------------------------------------------------------------------------

def _pad_1d(inp: ndarray,
            num: int) -> ndarray:
    z = np.array([0])
    z = np.repeat(z, num)
    return np.concatenate([z, inp, z])


def conv_1d(inp: ndarray,
            param: ndarray) -> ndarray:

    #assert correct dimensions
    assert_dim(inp, 1)
    assert_dim(param, 1)

    #pad the input
    param_len = param.shape[0]
    param_mid = param_len // 2
    inp_pad = _pad_1d(inp, param_mid)

    #initialize the output
    out = np.zeros(inp.shape)

    #perform the 1d convolution
    for o in range(out.shape[0]):
        for p in range(param_len):
            out[o] += param[p] * inp_pad[o+p]

    #ensure shapes didn't change
    assert_same_shape(inp, out)

    return out


def conv_1d_sum(inp: ndarray,
                param: ndarray) -> ndarray:

    out = conv_1d(inp, param)
    return np.sum(out)


def _param_grad_1d(inp: ndarray,
                   param: ndarray,
                   output_grad: ndarray = None) -> ndarray:

    param_len = param.shape[0]
    param_mid = param_len // 2
    input_pad = _pad_1d(inp, param_mid)

    if output_grad is None:
        output_grad = np.ones_like(inp)
    else:
        assert_same_shape(inp, output_grad)

    #Zero padded 1 dim convul
    param_grad = np.zeros_like(param)
    input_grad = np.zeros_like(inp)

    for o in range(inp.shape[0]):
        for p in range(param.shape[0]):
            param_grad[p] += input_pad[o+p] * output_grad[o]

    assert_same_shape(param_grad, param)

    return param_grad


def _input_grad_1d(inp: ndarray,
                  param: ndarray,
                  output_grad: ndarray = None) -> ndarray:

    param_len = param.shape[0]
    param_mid = param_len // 2
    inp_pad = _pad_1d(inp, param_mid)

    if output_grad is None:
        output_grad = np.ones_like(inp)
    else:
        assert_same_shape(inp, output_grad)

    output_pad = _pad_1d(output_grad, param_mid)

    #Zero padded 1 dim convol
    param_grad = np.zeros_like(param)
    input_grad = np.zeros_like(inp)

    for o in range(inp.shape[0]):
        for f in range(param.shape[0]):
            input_grad[o] += output_pad[o+param_len-f-1] * param[f]

    assert_same_shape(param_grad, param)

    return input_grad


# --------------------------------------------------------------------------
# 1D, batch size of 2
# --------------------------------------------------------------------------

def _pad_1d_batch(inp: ndarray,
                  num: int) -> ndarray:
    outs = [_pad_1d(obs, num) for obs in inp]
    return np.stack(outs)


def conv_1d_batch(inp: ndarray,
                  param: ndarray) -> ndarray:

    outs = [conv_1d(obs, param) for obs in inp]
    return np.stack(outs)


def input_grad_1d_batch(inp: ndarray,
                        param: ndarray) -> ndarray:

    out = conv_1d_batch(inp, param)

    out_grad = np.ones_like(out)

    batch_size = out_grad.shape[0]

    grads = [_input_grad_1d(inp[i], param, out_grad[i]) for i in range(batch_size)]

    return np.stack(grads)


def param_grad_1d_batch(inp: ndarray,
                        param: ndarray) -> ndarray:

    output_grad = np.ones_like(inp)

    inp_pad = _pad_1d_batch(inp, 1)
    out_pad = _pad_1d_batch(inp, 1)

    param_grad = np.zeros_like(param)

    for i in range(inp.shape[0]):
        for o in range(inp.shape[1]):
            for p in range(param.shape[0]):
                param_grad[p] += inp_pad[i][o+p] * output_grad[i][o]

    return param_grad


def conv_1d_batch_sum(inp: ndarray,
                      fil: ndarray) -> ndarray:
    out = conv_1d_batch(inp, fil)
    return np.sum(out)


# --------------------------------------------------------------------------
# 2D Convolutions
# --------------------------------------------------------------------------

def _pad_2d(inp: ndarray,
            num: int):
    '''
    input is a 3-D tensor, first dimension is batch size
    '''
    outs = [_pad_2d_obs(obs, num) for obs in inp]

    return np.stack(outs)


def _pad_2d_obs(inp: ndarray,
                num: int):
    '''
    input is a 2-D, square tensor
    '''
    inp_pad = _pad_1d_batch(inp, num)

    other = np.zeros((num, inp.shape[0] + num * 2))

    return np.concatenate([other, inp_pad, other])


def _compute_output_obs_2d(obs: ndarray,
                           param: ndarray):
    '''
    obs is a 2d tensor, as is param
    '''
    param_mid = param.shape[0] // 2

    obs_pad = _pad_2d_obs(obs, param_mid)

    out = np.zeros_like(obs)

    for o_w in range(out.shape[0]):
        for o_h in range(out.shape[1]):
            for p_w in range(param.shape[0]):
                for p_h in range(param.shape[1]):
                    out[o_w][o_h] += param[p_w][p_h] * obs_pad[o_w+p_w][o_h+p_h]

    return out


def _compute_output_2d(img_batch: ndarray,
                       param: ndarray):

    assert_dim(img_batch, 3)

    outs = [_compute_output_obs_2d(obs, param) for obs in img_batch]

    return np.stack(outs)


def _compute_grads_obs_2d(input_obs: ndarray,
                          output_grad_obs: ndarray,
                          param: ndarray) -> ndarray:
    '''
    input_obs: 2d tensor representing the input observation
    output_grad_obs: 2d tensor representing the output gradient
    param: 2d filter
    '''

    param_size = param.shape[0]
    output_obs_pad = _pad_2d_obs(output_grad_obs, param_size // 2)
    input_grad = np.zeros_like(input_obs)

    for i_w in range(input_obs.shape[0]):
        for i_h in range(input_obs.shape[1]):
            for p_w in range(param_size):
                for p_h in range(param_size):
                    input_grad[i_w][i_h] += output_obs_pad[i_w+param_size-p_w-1][i_h+param_size-p_h-1] \
                    * param[p_w][p_h]

    return input_grad


def _compute_grads_2d(inp: ndarray,
                      output_grad: ndarray,
                      param: ndarray) -> ndarray:
    grads = [_compute_grads_obs_2d(inp[i], output_grad[i], param) for i in range(output_grad.shape[0])]

    return np.stack(grads)


def _param_grad_2d(inp: ndarray,
                   output_grad: ndarray,
                   param: ndarray) -> ndarray:

    param_size = param.shape[0]
    inp_pad = _pad_2d(inp, param_size // 2)

    param_grad = np.zeros_like(param)
    img_shape = output_grad.shape[1:]

    for i in range(inp.shape[0]):
        for o_w in range(img_shape[0]):
            for o_h in range(img_shape[1]):
                for p_w in range(param_size):
                    for p_h in range(param_size):
                        param_grad[p_w][p_h] += inp_pad[i][o_w+p_w][o_h+p_h]\
                        * output_grad[i][o_w][o_h]
    return param_grad


def _compute_output_2d_sum(img_batch: ndarray,
                           param: ndarray):

    out = _compute_output_2d(img_batch, param)

    return out.sum()


# --------------------------------------------------------------------------
# Channels + batch size
# --------------------------------------------------------------------------

def _pad_2d_channel(inp: ndarray,
                    num: int):
    '''
    inp has dimension [num_channels, image_width, image_height]
    '''
    return np.stack([_pad_2d_obs(channel, num) for channel in inp])


def _pad_conv_input(inp: ndarray,
                    num: int):
    '''
    inp has dimension [batch_size, num_channels, image_width, image_height]
    '''
    return np.stack([_pad_2d_channel(obs, num) for obs in inp])


def _compute_output_obs(obs: ndarray,
                        param: ndarray):
    '''
    obs: [channels, img_width, img_height]
    param: [in_channels, out_channels, fil_width, fil_height]
    '''
    assert_dim(obs, 3)
    assert_dim(param, 4)

    param_size = param.shape[0]
    param_mid = param_size // 2
    obs_pad = _pad_2d_channel(obs, param_mid)

    in_channels = param.shape[0]
    out_channels = param.shape[1]
    img_size = obs.shape[1]

    out = np.zeros((out_channels,) + obs.shape[1:])
    for c_in in range(in_channels):
        for c_out in range(out_channels):
            for o_w in range(img_size):
                for o_h in range(img_size):
                    for p_w in range(param_size):
                        for p_h in range(param_size):
                            out[c_out][o_w][o_h] += \
                            param[c_in][c_out][p_w][p_h] * obs_pad[c_in][o_w+p_w][o_h+p_h]

    return out


def _output(inp: ndarray,
            param: ndarray) -> ndarray:
    '''
    obs: [batch_size, channels, img_width, img_height]
    fil: [in_channels, out_channels, fil_width, fil_height]
    '''
    outs = [_compute_output_obs(obs, param) for obs in inp]

    return np.stack(outs)


def _compute_grads_obs(input_obs: ndarray,
                       output_grad_obs: ndarray,
                       param: ndarray) -> ndarray:
    '''
    input_obs - [in_channels, img_width, img_height]
    output_grad_obs - [out_channel, img_width, img_height]
    param - [in_channels, out_channels, img_width, img_height]
    '''
    input_grad = np.zeros_like(input_obs)
    param_size = param.shape[2]
    param_mid = param_size // 2
    img_size = input_obs.shape[1]
    in_channels = input_obs.shape[0]
    out_channels = param.shape[1]
    output_obs_pad = _pad_2d_channel(output_grad_obs, param_mid)

    for c_in in range(in_channels):
        for c_out in range(out_channels):
            for i_w in range(input_obs.shape[1]):
                for i_h in range(input_obs.shape[2]):
                    for p_w in range(param_size):
                        for p_h in range(param_size):
                            input_grad[c_in][i_w][i_h] += \
                            output_obs_pad[c_out][i_w+param_size-p_w-1][i_h+param_size-p_h-1] \
                            * param[c_in][c_out][p_w][p_h]

    return input_grad


def _input_grad(inp: ndarray,
                output_grad: ndarray,
                param: ndarray) -> ndarray:

    grads = [_compute_grads_obs(inp[i], output_grad[i], param) for i in range(output_grad.shape[0])]

    return np.stack(grads)


def _param_grad(inp: ndarray,
                output_grad: ndarray,
                param: ndarray) -> ndarray:
    '''
    inp: [in_channels, img_width, img_height]
    output_grad_obs: [out_channels, img_width, img_height]
    param: [in_channels, out_channels, img_width, img_height]
    '''
    param_grad = np.zeros_like(param)
    param_size = param.shape[2]
    param_mid = param_size // 2
    img_size = inp.shape[2]
    in_channels = inp.shape[1]
    out_channels = output_grad.shape[1]

    inp_pad = _pad_conv_input(inp, param_mid)
    img_shape = output_grad.shape[2:]

    for i in range(inp.shape[0]):
        for c_in in range(in_channels):
            for c_out in range(out_channels):
                for o_w in range(img_shape[0]):
                    for o_h in range(img_shape[1]):
                        for p_w in range(param_size):
                            for p_h in range(param_size):
                                param_grad[c_in][c_out][p_w][p_h] += \
                                inp_pad[i][c_in][o_w+p_w][o_h+p_h] \
                                * output_grad[i][c_out][o_w][o_h]

    return param_grad


def _compute_output_sum(imgs: ndarray,
                        param: ndarray):
    return _output(imgs, param).sum()


# --------------------------------------------------------------------------
# NOT IN THE NOTEBOOK: the forward with its one bug fixed, as the fair
# baseline for timing convx's _output.  Identical to _compute_output_obs /
# _output above except for the marked line.
# --------------------------------------------------------------------------

def _compute_output_obs_fixed(obs: ndarray,
                              param: ndarray):
    '''
    obs: [channels, img_width, img_height]
    param: [in_channels, out_channels, fil_width, fil_height]
    '''
    assert_dim(obs, 3)
    assert_dim(param, 4)

    param_size = param.shape[2]  # the fix: the notebook has param.shape[0]
    param_mid = param_size // 2
    obs_pad = _pad_2d_channel(obs, param_mid)

    in_channels = param.shape[0]
    out_channels = param.shape[1]
    img_size = obs.shape[1]

    out = np.zeros((out_channels,) + obs.shape[1:])
    for c_in in range(in_channels):
        for c_out in range(out_channels):
            for o_w in range(img_size):
                for o_h in range(img_size):
                    for p_w in range(param_size):
                        for p_h in range(param_size):
                            out[c_out][o_w][o_h] += \
                            param[c_in][c_out][p_w][p_h] * obs_pad[c_in][o_w+p_w][o_h+p_h]

    return out


def _output_fixed(inp: ndarray,
                  param: ndarray) -> ndarray:
    '''
    obs: [batch_size, channels, img_width, img_height]
    fil: [in_channels, out_channels, fil_width, fil_height]
    '''
    outs = [_compute_output_obs_fixed(obs, param) for obs in inp]

    return np.stack(outs)


# The 28 names of the notebook (``_pad_1d`` once), then the two additions.
NOTEBOOK_NAMES = (
    "assert_same_shape", "assert_dim",
    "_pad_1d", "conv_1d", "conv_1d_sum", "_param_grad_1d", "_input_grad_1d",
    "_pad_1d_batch", "conv_1d_batch", "input_grad_1d_batch", "param_grad_1d_batch",
    "conv_1d_batch_sum",
    "_pad_2d", "_pad_2d_obs", "_compute_output_obs_2d", "_compute_output_2d",
    "_compute_grads_obs_2d", "_compute_grads_2d", "_param_grad_2d", "_compute_output_2d_sum",
    "_pad_2d_channel", "_pad_conv_input", "_compute_output_obs", "_output",
    "_compute_grads_obs", "_input_grad", "_param_grad", "_compute_output_sum",
)
ADDED_NAMES = ("_compute_output_obs_fixed", "_output_fixed")
