"""Example calls of every registered op: the finite-difference test enumerates the registry through this
table (tests/test_engine.py), and docs/ops.md shows each op's first example with what its backward pass keeps.

Each op maps to a list of (inputs, attrs); an input is a shape (random floats, differentiated) or an array
(a constant: integer labels, indices and keys, or a value read only for its shape). Broadcasting and size-1
axes are included wherever the op allows them. An op without examples is listed, with the reason, in
NOT_DIFFERENTIABLE (every VJP is None) or BY_DEFINITION (checked by a test of its own).
"""
import numpy as np

LABELS = np.array([[0, 2, 1], [1, 1, 0]])
KEY = np.array(7)
CASES = {
    "add": [([(3, 4), (4,)], {}), ([(2, 1, 3), (1, 4, 1)], {}), ([(), (3,)], {})],
    "sub": [([(3, 4), (3, 1)], {}), ([(5,), ()], {})],
    "mul": [([(3, 4), (4,)], {}), ([(2, 1), (1, 3)], {})],
    "div": [([(3, 4), (1, 4)], {}), ([(3,), ()], {})],
    "pow": [([(3, 4), (4,)], {}), ([(2, 3), ()], {})],
    "maximum": [([(3, 4), (4,)], {}), ([(2, 1), (1, 3)], {})],
    "minimum": [([(3, 4), (3, 1)], {}), ([(), (3,)], {})],
    "where": [([np.array([[1.0, 0, 1, 0]]), (3, 4), (3, 1)], {}), ([np.array([True, False]), (), (2, 1, 2)], {})],
    "clip": [([(3, 4)], {"lo": -0.5, "hi": 0.5}), ([(2, 1, 3)], {"lo": 0.0}), ([(5,)], {"hi": 0.2})],
    "neg": [([(3, 2)], {}), ([(1, 3, 1)], {})],
    "abs": [([(3, 2)], {}), ([(1, 4)], {})],
    "exp": [([(3, 2)], {}), ([(1,)], {})],
    "log": [([(3, 2)], {}), ([(1, 4)], {})],
    "log1p": [([(3, 2)], {}), ([(1, 3, 1)], {})],
    "sqrt": [([(3, 2)], {}), ([(1,)], {})],
    "square": [([(4,)], {}), ([(2, 1, 3)], {})],
    "sin": [([(3, 2)], {}), ([(1,)], {})],
    "cos": [([(3, 2)], {}), ([(2, 1)], {})],
    "tanh": [([(3, 2)], {}), ([(1, 1)], {})],
    "sigmoid": [([(3, 2)], {}), ([(1, 5)], {})],
    "softplus": [([(3, 2)], {}), ([(4, 1)], {})],
    "relu": [([(3, 4)], {}), ([(1, 5)], {})],
    "leaky_relu": [([(3, 4)], {}), ([(1, 5)], {"alpha": 0.2})],
    "elu": [([(3, 4)], {}), ([(5, 1)], {"alpha": 0.5})],
    "gelu": [([(3, 4)], {}), ([(1, 5)], {})],
    "silu": [([(3, 4)], {}), ([(1, 5)], {})],
    "sum": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": 1}), ([(3, 4)], {"axis": [0, 1], "keepdims": True}),
            ([(3, 1)], {"axis": -1})],
    "mean": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": [0, 2]}), ([(3, 4)], {"axis": 0, "keepdims": True})],
    "max": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": 1}), ([(3, 1)], {"axis": [0, 1], "keepdims": True})],
    "min": [([(3, 4)], {}), ([(2, 4, 3)], {"axis": -1, "keepdims": True}), ([(1, 3)], {"axis": 0})],
    "var": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": [0, 2]}), ([(5, 1)], {"axis": 0, "keepdims": True, "ddof": 1})],
    "logsumexp": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": 1}), ([(1, 4)], {"axis": -1, "keepdims": True})],
    "softmax": [([(3, 4)], {}), ([(2, 3, 1)], {"axis": 1}), ([(1, 5)], {"axis": 0})],
    "log_softmax": [([(3, 4)], {}), ([(2, 3, 1)], {"axis": 1}), ([(1, 5)], {})],
    "softmax_cross_entropy": [([(2, 3, 4), LABELS], {}), ([(1, 3), np.array([2])], {}), ([(5,), np.array(1)], {})],
    "softmax_cross_entropy_grad": [([(2, 3, 4), LABELS, ()], {}), ([(1, 3), np.array([2]), ()], {}),
                                   ([(5,), np.array(1), ()], {})],
    "sigmoid_binary_cross_entropy": [([(3, 4), (3, 4)], {}), ([(1, 2), (1, 2)], {})],
    "matmul": [([(3, 4), (4, 5)], {}), ([(4,), (4, 5)], {}), ([(3, 4), (4,)], {}), ([(4,), (4,)], {}),
               ([(2, 3, 4), (4, 5)], {}), ([(2, 3, 4), (1, 4, 5)], {}), ([(4,), (2, 4, 5)], {}),
               ([(2, 3, 4), (4,)], {}), ([(3, 1), (1, 4)], {})],
    "transpose": [([(3, 4)], {}), ([(2, 3, 4)], {"axes": [2, 0, 1]}), ([(1, 3, 1)], {})],
    "expand_dims": [([(3, 4)], {"axis": 1}), ([(3,)], {"axis": [0, -1]})],
    "squeeze": [([(3, 1, 4)], {"axis": 1}), ([(1, 3, 1)], {"axis": [0, 2]})],
    "reshape": [([(3, 4)], {"shape": [2, 6]}), ([(2, 3, 1)], {"shape": [-1]}), ([(1, 6)], {"shape": [3, 1, -1]})],
    "flatten": [([(2, 3, 4)], {}), ([(2, 1, 3, 1)], {"axis": 2}), ([(4,)], {"axis": 0})],
    "broadcast_to": [([(4,)], {"shape": [3, 4]}), ([(3, 1)], {"shape": [2, 3, 5]})],
    "slice": [([(3, 6)], {"axis": 1, "start": 1, "stop": 5, "step": 2}), ([(4, 1)], {"axis": 0, "start": -2}),
              ([(2, 5, 1)], {"axis": -2, "stop": 3})],
    "take": [([(5, 3), np.array([[0, 4], [4, 2]])], {}), ([(2, 4, 1), np.array([3, 0, 3])], {"axis": 1}),
             ([(3,), np.array(2)], {})],
    "concat": [([(2, 3), (2, 1), (2, 2)], {"axis": 1}), ([(1, 3), (2, 3)], {}), ([(4,)], {})],
    "stack": [([(2, 3), (2, 3)], {}), ([(3, 1), (3, 1), (3, 1)], {"axis": -1}), ([(), ()], {})],
    "conv2d": [([(2, 3, 5, 5), (4, 3, 3, 3)], {}), ([(1, 2, 6, 5), (3, 2, 3, 2)], {"stride": 2, "padding": 1}),
               ([(2, 1, 4, 4), (1, 1, 1, 1)], {"stride": [1, 2], "padding": [0, 1]})],
    "conv2d_input_grad": [([(2, 4, 3, 3), (4, 3, 3, 3)], {"stride": 1, "padding": 0, "size": [5, 5]}),
                          ([(1, 3, 3, 3), (3, 2, 3, 2)], {"stride": 2, "padding": 1, "size": [6, 5]})],
    "conv2d_weight_grad": [([(2, 3, 5, 5), (2, 4, 3, 3)], {"stride": 1, "padding": 0, "kernel": [3, 3]}),
                           ([(1, 2, 6, 5), (1, 3, 3, 3)], {"stride": 2, "padding": 1, "kernel": [3, 2]})],
    "max_pool2d": [([(2, 3, 4, 4)], {"kernel": 2}), ([(1, 2, 5, 5)], {"kernel": 3, "stride": 2, "padding": 1}),
                   ([(1, 1, 3, 4)], {"kernel": [1, 2], "stride": 1})],
    "avg_pool2d": [([(2, 3, 4, 4)], {"kernel": 2}), ([(1, 2, 5, 5)], {"kernel": 3, "stride": 2, "padding": 1}),
                   ([(1, 1, 3, 3)], {"kernel": 3})],
    "avg_pool2d_grad": [([(2, 3, 2, 2)], {"kernel": 2, "stride": None, "padding": 0, "size": [4, 4]}),
                        ([(1, 2, 3, 3)], {"kernel": 3, "stride": 2, "padding": 1, "size": [5, 5]})],
    "dropout": [([(3, 4), KEY], {"rate": 0.5}), ([(1, 6), KEY], {"rate": 0.1, "salt": 3})],
    "powers": [([(5,)], {"degree": 3}), ([(2, 3)], {"degree": 0})],
    "sum_to": [([(3, 4)], {"shape": (4,)}), ([(2, 3, 4)], {"shape": (3, 1)})],
    "broadcast_like": [([(4,), np.zeros((3, 4))], {}), ([(3, 1), np.zeros((3, 5))], {})],
    "slice_grad": [([(3, 2), np.zeros((3, 6))], {"axis": 1, "start": 1, "stop": 5, "step": 2}),
                   ([(1, 1), np.zeros((1, 4))], {"axis": -1, "start": -1})],
    "take_grad": [([(2, 2, 3), np.array([[0, 4], [4, 2]]), np.zeros((5, 3))], {}),
                  ([(2, 3, 1), np.array([3, 0, 3]), np.zeros((2, 4, 1))], {"axis": 1})],
}
# op -> why it has no gradient check: every input's VJP is None.
NOT_DIFFERENTIABLE = {
    "count": "returns a size, which does not depend on the values",
    "one_hot": "its input is integer labels",
    "sign": "piecewise constant (abs's derivative): zero almost everywhere, needed only by first derivatives",
    "step": "piecewise constant (relu's derivative): zero almost everywhere",
    "win_share": "piecewise constant (maximum/minimum's tie shares): zero almost everywhere",
    "tie_share": "piecewise constant (max/min's tie shares): zero almost everywhere",
    "max_pool2d_grad": "backward-only helper of max_pool2d; second derivatives through max pooling are not supported",
}


# op -> why finite differences do not apply, and the test that checks it instead
BY_DEFINITION = {"stop_gradient": "the identity forward, with a zero gradient by definition "
                                  "(test_stop_gradient_passes_values_and_blocks_gradients)"}
