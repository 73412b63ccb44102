"""The seed corpus: decisions of `calls.encode` for calls worth starting from.

``python tests/fuzz/fuzz.py --write-seeds`` writes each as ``corpus/<name>``;
``test_fuzz.py`` checks that the committed files are what these decisions
encode and replays them.  The first group holds the reproducers of
tests/test_fuzz_findings.py (a crash on n_threads, weights that alias
grad_out, the logits passed twice with grad_out=logits, reductions that are
not strings, NumPy warnings, a NaN weight of an unused class); the second
spreads over the functions, and the reproducers of later campaigns.
"""

import math

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
    # the extras: token statistics, temperature / softcap / z-loss, the focal
    # losses, SciPy's options of logsumexp -- valid calls on each path, and
    # each kind of bad option
    "token_stats": {"fn": "token_stats"},
    "token_stats-no-target": {"fn": "token_stats", "target.kind": "none"},
    "token_stats-target-keyword-none": {"fn": "token_stats", "target.kind": "explicit-none"},
    "token_stats-temperature-ignore": {"fn": "token_stats", "temperature": 0.7, "ignore_index": -100,
                                       "target.bad": "-100"},
    "token_stats-specials-large": dict(_BIG, fn="token_stats", n_threads=2, **{
        "logits.n_specials": 4, "logits.special": -math.inf, "temperature": 2.0}),
    "token_stats-float16-nan": {"fn": "token_stats", "logits.dtype": "float16", "logits.n_specials": 1,
                                "logits.special": math.nan},
    "token_stats-temperature-zero": {"fn": "token_stats", "temperature": 0.0},
    "token_stats-temperature-array": {"fn": "token_stats", "temperature": "0d-array"},
    # integers past 2**53 (uint64 -1 wrapped): argmax and rank on float64
    # values, not the integers (reported; the oracle skips that comparison)
    "token_stats-uint64-huge": {"fn": "token_stats", "logits.float": True, "logits.dtype": "uint64"},
    "ce-temperature": {"temperature": 0.7},
    "ce-temperature-fraction-probs": {"temperature": "fraction", "target.kind": "probs"},
    "ce-softcap-z_loss-grad": dict(_GRAD, softcap=1.0, z_loss=1e-4),
    "ce-extras-probs-grad": dict(_GRAD, temperature=2.0, softcap=5, z_loss=1.0, **{"target.kind": "probs"}),
    "ce-extras-large-weighted-grad": dict(_GRAD, shape=(40, 1000), temperature=0.5, softcap=30.0,
                                          z_loss=1e-4, **{"weight.given": True, "sample_weight.given": True,
                                                          "ignore_index": -100, "target.bad": "-100"}),
    "ce-temperature-tiny-grad": dict(_GRAD, temperature=1e-300),
    "ce-softcap-float32-logits": {"logits.dtype": "float32", "softcap": "float32", "z_loss": "float32"},
    "ce-softcap-nan": {"softcap": math.nan},
    "ce-z_loss-negative": {"z_loss": -1e-4},
    "ce-temperature-bool": {"temperature": True},
    "sigmoid_focal": {"fn": "sigmoid_focal_loss"},
    "sigmoid_focal-grad-gamma0-alpha-none": {"fn": "sigmoid_focal_loss_with_grad", "gamma": 0.0, "alpha": None},
    "sigmoid_focal-grad-float32-large": {"fn": "sigmoid_focal_loss_with_grad", "shape": (40, 1000),
                                         "logits.dtype": "float32", "gamma": 0.5, "reduction": "none"},
    "sigmoid_focal-bool-target-in-place": {"fn": "sigmoid_focal_loss_with_grad", "target.dtype": "bool",
                                           "grad_out": "logits", "alpha": -1.0},
    "sigmoid_focal-gamma-negative": {"fn": "sigmoid_focal_loss", "gamma": -1.0},
    "sigmoid_focal-alpha-str": {"fn": "sigmoid_focal_loss", "alpha": "str"},
    # targets past [0, 1] (the logits): refused, naming `target`
    "sigmoid_focal-grad-logits-as-target": {"fn": "sigmoid_focal_loss_with_grad", "logits_again": "target"},
    # alpha = 0 and a target of 1 make alpha_t exactly 0: the element is
    # removed even at a NaN logit (the reference gave NaN)
    "sigmoid_focal-alpha0-nan-logit": {"fn": "sigmoid_focal_loss_with_grad", "alpha": 0.0,
                                       "logits.n_specials": 1, "logits.special_at": 0,
                                       "logits.special": math.nan, "target.dtype": "float64",
                                       "target.scale": 1e4},
    "softmax_focal": {"fn": "softmax_focal_loss"},
    "softmax_focal-grad-probs-weight": {"fn": "softmax_focal_loss_with_grad", "target.kind": "probs",
                                        "weight.given": True, "alpha": 0.25, "gamma": 5.0},
    "softmax_focal-grad-large-ignore": {"fn": "softmax_focal_loss_with_grad", "shape": (40, 1000),
                                        "ignore_index": -100, "target.bad": "-100", "n_threads": 2},
    "softmax_focal-alpha-nan": {"fn": "softmax_focal_loss", "alpha": math.nan},
    "softmax_focal-gamma-none": {"fn": "softmax_focal_loss_with_grad", "gamma": None, "grad_out": "fresh"},
    "logsumexp-b-signed-return_sign": {"fn": "logsumexp", "b.given": True, "b.kind": "signed",
                                       "return_sign": True},
    "logsumexp-b-mask-keepdims": {"fn": "logsumexp", "shape": (2, 3, 4), "lse.axis": "tuple-2",
                                  "b.given": True, "b.kind": "bool", "b.shape": "last", "keepdims": True},
    "logsumexp-axis-none": {"fn": "logsumexp", "shape": (2, 3, 4), "lse.axis": "None", "return_sign": 1},
    "logsumexp-axis-empty-tuple": {"fn": "logsumexp", "lse.axis": "empty-tuple", "b.given": True},
    "logsumexp-axis-duplicate": {"fn": "logsumexp", "lse.axis": "tuple-neg-dup"},
    "logsumexp-b-bad-shape": {"fn": "logsumexp", "b.given": True, "b.shape": "bad"},
    "logsumexp-b-complex": {"fn": "logsumexp", "b.given": True, "b.kind": "complex"},
    "logsumexp-keepdims-2": {"fn": "logsumexp", "keepdims": 2},
    # infinite weights: xent.reference gave NaN where the sum is +inf (xent:
    # inf), where exp(x - max) underflows at one (fixed) and for two of them
    # in one sum (reported; the oracle skips those entries)
    "logsumexp-b-inf-twice": {"fn": "logsumexp", "shape": (2, 3, 4), "axis": 0, "lse.axis": "tuple",
                              "b.given": True, "b.shape": "last", "b.kind": "inf"},
    "logsumexp-b-inf-underflow": {"fn": "logsumexp", "shape": (2, 3, 4), "logits.scale": 1e4,
                                  "b.given": True, "b.shape": "last", "b.kind": "inf"},
    # a temperature whose reciprocal overflows the compute dtype: x * fl(1/T)
    # was 0 * inf = NaN at a zero logit, and argmax / rank followed that NaN;
    # now refused (ValueError)
    "token_stats-float16-temperature-1e-300": {"fn": "token_stats", "logits.dtype": "float16",
                                               "temperature": 1e-300, "logits.n_specials": 1,
                                               "logits.special": 0.0},
    # a NaN sample weight on an ignored row: xent 0 (documented), the
    # reference NaN (reported; the oracle gives the reference weight 1 there)
    "ce-nan-sample_weight-ignored-row": dict(_GRAD, shape=(40, 1000), **{
        "sample_weight.given": True, "sample_weight.kind": "nan", "ignore_index": -100,
        "target.bad": "-100", "target.bad_at": 0, "z_loss": 1e-4}),
    "ce-temperature-1e-310": {"temperature": 1e-310, "logits.scale": 0.01, "reduction": "none",
                              "logits.n_specials": 1, "logits.special": 0.0},
    # the divergences
    "kl": {"fn": "kl_divergence"},
    "kl-grad-large-reverse": {"fn": "kl_divergence_with_grad", "shape": (40, 1000), "reverse": True,
                              "n_threads": 2, "temperature": 0.7},
    "kl-grad-near-in-place": {"fn": "kl_divergence_with_grad", "target_logits.kind": "near",
                              "grad_out": "logits"},
    "kl-target-ignore": {"fn": "kl_divergence", "target.given": True, "ignore_index": -100,
                         "target.bad": "-100", "sample_weight.given": True},
    "kl-ignore-without-target": {"fn": "kl_divergence", "ignore_index": 0},
    "kl-float16-both": {"fn": "kl_divergence_with_grad", "logits.dtype": "float16",
                        "target_logits.kind": "same", "logits.n_specials": 1},
    "kl-bad-shape": {"fn": "kl_divergence", "target_logits.kind": "bad-shape"},
    "kl-logits-as-target-logits-in-place": {"fn": "kl_divergence_with_grad", "grad_out": "logits",
                                            "logits_again": "target"},
    # huge gaps: xent.reference took an underflowed exp(log p) for a mask (+inf)
    "kl-scale-1e4": {"fn": "kl_divergence", "logits.scale": 1e4, "target_logits.scale": 1e4},
    # a logit of 1.7e308: the kernels' sum of terms overflowed (+inf, the
    # divergence 1e308)
    "kl-grad-logit-1.7e308": {"fn": "kl_divergence_with_grad", "logits.scale": 1e4,
                              "logits.n_specials": 1, "logits.special": 1.7e308},
    "js": {"fn": "js_divergence"},
    "js-grad-beta-large": {"fn": "js_divergence_with_grad", "beta": 0.1, "shape": (40, 1000),
                           "logits.scale": 10.0, "target_logits.scale": 10.0},
    "js-beta-one": {"fn": "js_divergence", "beta": 1.0},
    # a NaN class weight of a used class, the mean's gradient: the reference
    # gave the ignored rows NaN (0 / NaN) where xent and PyTorch give 0
    "softmax_focal-grad-nan-weight-ignore": {"fn": "softmax_focal_loss_with_grad", "shape": (32, 10),
                                             "weight.given": True, "weight.kind": "nan",
                                             "ignore_index": 1, "reduction": "mean"},
    "js-grad-masks": {"fn": "js_divergence_with_grad", "logits.n_specials": 2, "logits.special": -math.inf,
                      "target_logits.n_specials": 2, "target_logits.special": -math.inf},
}
