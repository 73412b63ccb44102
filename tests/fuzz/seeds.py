"""The seed corpus: decisions of `calls.encode` for calls worth starting from.

``python tests/fuzz/fuzz.py --write-seeds`` writes each as ``corpus/<name>``;
``test_fuzz.py`` checks that the committed files are what these decisions
encode and replays them.  The first group holds the reproducers of
tests/test_fuzz_findings.py (a crash on n_threads, weights that alias
grad_out, the logits passed twice with grad_out=logits, reductions that are
not strings, NumPy warnings, a NaN weight of an unused class); the second
spreads over the functions, and the reproducers of later campaigns.
"""

_BIG = {"shape": (40, 1000)}          # past one tile: the general, threaded path
_GRAD = {"fn": "softmax_cross_entropy_with_grad"}
_BCE_GRAD = {"fn": "sigmoid_binary_cross_entropy_with_grad"}

SEEDS = {
    # n_threads past the CPUs reached OpenMP: a crash, an abort, an OverflowError
    "n_threads-100000": dict(_BIG, n_threads=100000),
    "n_threads-2_31": dict(_BIG, n_threads=2**31 - 1),
    "n_threads-2_40-small": {"n_threads": 2**40},
    "n_threads-2_40-large": dict(_BIG, n_threads=2**40),
    "n_threads-2_80": dict(_BIG, n_threads=2**80),
    "n_threads-1000-bce": dict(_BIG, fn="sigmoid_binary_cross_entropy", n_threads=1000),
    # a weight handed over as a memoryview of grad_out's memory: wrong results
    "weight-memoryview-grad_out": dict(_GRAD, **{"weight.given": True, "weight.wrap": "memoryview",
                                                 "grad_out": "weight"}),
    "sample_weight-memoryview-grad_out": dict(_GRAD, **{"sample_weight.given": True,
                                                        "sample_weight.wrap": "memoryview",
                                                        "grad_out": "sample-weight"}),
    "pos_weight-memoryview-grad_out": dict(_BCE_GRAD, **{"pos_weight.given": True,
                                                         "pos_weight.shape": "logits",
                                                         "pos_weight.wrap": "memoryview",
                                                         "grad_out": "pos-weight"}),
    "bce-weight-memoryview-grad_out": dict(_BCE_GRAD, **{"weight.given": True, "weight.shape": "last",
                                                         "weight.wrap": "memoryview",
                                                         "grad_out": "weight"}),
    # grad_out=logits with the logits passed again as another argument
    "in-place-logits-as-target": dict(_GRAD, **{"target.kind": "probs", "grad_out": "logits",
                                                "logits_again": "target"}),
    "in-place-bce-logits-as-target": dict(_BCE_GRAD, grad_out="logits", logits_again="target"),
    "in-place-bce-logits-as-weight": dict(_BCE_GRAD, **{"weight.given": True, "weight.shape": "logits",
                                                        "grad_out": "logits", "logits_again": "weight"}),
    "in-place-bce-logits-as-pos_weight": dict(_BCE_GRAD, **{"pos_weight.given": True,
                                                            "pos_weight.shape": "logits",
                                                            "grad_out": "logits",
                                                            "logits_again": "pos_weight"}),
    # reduction as a 0-d string array, two reductions in an array
    "reduction-0d-array-small": {"reduction": "0d-array"},
    "reduction-0d-array-large": dict(_BIG, reduction="0d-array"),
    "reduction-two-array": {"reduction": "two-array"},
    "reduction-np-str": {"reduction": "np.str_"},
    # NumPy warnings: casts that overflow, a Keras mean that overflows, long doubles
    "float32-logits-weight-1e300": {"logits.dtype": "float32", "weight.given": True, "weight.kind": "huge"},
    "float32-logits-target-1e300": {"logits.dtype": "float32", "target.kind": "probs",
                                    "target.n_specials": 1, "target.special": 1e300},
    "keras-binary-mean-overflow": {"fn": "keras.binary_crossentropy", "from_logits": True,
                                   "logits.n_specials": "fill", "logits.special": 1.7e308},
    "longdouble-logits": {"logits.dtype": "longdouble", "logits.n_specials": 2, "logits.special": "1e4000"},
    "longdouble-keras-sparse": {"fn": "keras.sparse_categorical_crossentropy", "logits.dtype": "longdouble",
                                "logits.n_specials": "fill", "logits.special": "1e4000"},
    "longdouble-bce": {"fn": "sigmoid_binary_cross_entropy", "logits.dtype": "longdouble",
                       "logits.scale": 1e30},
    # a NaN class weight that no label uses made every gradient NaN (C > 32)
    "nan-weight-unused-class": dict(_GRAD, shape=(40, 1000), **{"weight.given": True, "weight.kind": "nan",
                                                              "target.seed": 7}),
    # a spread over the functions and argument kinds
    "plain": {},
    "plain-grad": _GRAD,
    "probs": {"target.kind": "probs"},
    "bce": {"fn": "sigmoid_binary_cross_entropy"},
    "logsumexp-3d-axis0": {"fn": "logsumexp", "shape": (2, 3, 4), "axis": 0},
    "log_softmax-out-in-place": {"fn": "log_softmax", "grad_out": "logits"},
    "softmax-out-partial": {"fn": "softmax", "grad_out": "partial-logits"},
    "keras-categorical": {"fn": "keras.categorical_crossentropy"},
    "keras-sparse": {"fn": "keras.sparse_categorical_crossentropy"},
    "label-minus-100": {"target.bad": "-100"},
    "label-huge-uint64": {"target.dtype": "uint64", "target.bad": "huge-uint64"},
    "float16-large-grad": dict(_GRAD, shape=(40, 1000), **{"logits.dtype": "float16"}),
    "split-rows": dict(_GRAD, shape=(2, 70000), n_threads=2),
    "empty-rows": {"shape": (0, 5), "reduction": "mean"},
    "zero-classes": {"shape": (5, 0)},
    "zero-d": {"shape": ()},
    "raising-array": {"logits.wrap": "raises", "logits.exc": "RuntimeError"},
    # a small call with grad_out checked overlaps against a target or weight
    # that is not an array yet: the object's own error escaped, unnamed
    "raising-target-grad_out": dict(_GRAD, **{"target.wrap": "raises", "target.exc": "ValueError",
                                              "grad_out": "fresh"}),
    "raising-bce-weight-grad_out": dict(_BCE_GRAD, **{"weight.given": True, "weight.wrap": "raises",
                                                      "weight.exc": "TypeError",
                                                      "grad_out": "logits"}),
    "memmap-logits": {"logits.layout": "memmap"},
}
