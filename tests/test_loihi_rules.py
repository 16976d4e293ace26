"""Lowering rules to Loihi 2's learning engine (export/loihi_rules.py).

Three kinds of evidence:
* the strings are what a person would write, and Lava's own parser turns them into
  exactly the products the lowering meant (coefficients and constants bit for bit);
* a LearningDense network running the lowered rule in Lava's floating-point engine
  gives the same spikes and weights as the torch engine running the original rule;
* everything the learning engine cannot do raises LoihiLoweringError naming the
  product and a hardware-compatible variant.
"""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from neuro import (
    LIF,
    LearningRule,
    Network,
    Param,
    Simulator,
    Trace,
    abs_,
    clamp,
    exp,
    maximum,
    minimum,
    sign,
    softmax,
    standard_rules,
    t,
    u,
    w,
    x0,
    x1,
    x2,
    y0,
    y1,
    y2,
)

lava = pytest.importorskip("lava")
from lava.magma.core.learning.learning_rule import Loihi2FLearningRule, Loihi3FLearningRule  # noqa: E402
from lava.magma.core.learning.product_series import ProductSeries  # noqa: E402
from lava.magma.core.learning.symbolic_equation import SymbolicEquation  # noqa: E402
from lava.utils.weightutils import SignMode  # noqa: E402

from export.lava import run_lava  # noqa: E402
from export.loihi_rules import PostTrace, to_loihi_rule  # noqa: E402
from hardware.loihi_rules import (  # noqa: E402
    LoihiLoweringError,
    format_products,
    loihi_scaling,
    lower_products,
    lowering_problems,
    to_loihi_strings,
    weight_sign_mode,
)

DT = 1e-3
INF = math.inf


def _excitatory(rule):
    return replace(rule, w_min=0.0, w_max=INF)


STDP = _excitatory(standard_rules.stdp(a_plus=2**-5, a_minus=2**-5))
STDP_MULT = _excitatory(standard_rules.stdp(a_plus=2**-5, a_minus=2**-5, multiplicative=True))
RSTDP = standard_rules.reward_modulated_stdp(a_plus=2**-5, a_minus=2**-5, eligibility_decay=2**-3)
MOD_STDP = standard_rules.modulated_stdp(a_plus=2**-5, a_minus=2**-5)

# The rules of tests/test_lava_reference.py with the Lava strings written there by hand.
from test_lava_reference import CASES as _LAVA_REFERENCE_CASES  # noqa: E402

REFERENCE = {
    name: (rule, {k: kwargs[k] for k in ("dw", "dt", "dd") if k in kwargs})
    for name, (kwargs, rule, _rate) in _LAVA_REFERENCE_CASES.items()
}

# Parameters, an integer power, abs/sign of the weight, a bracket constant that is no
# power of two (0.3), a decimated u and a tag: everything lowering rewrites.
EXOTIC = LearningRule(
    dw=Param("eta") * y0 * (x1 - 0.3) * (1.0 - w**2) * 4.0
    - 2**-4 * x0 * y1 * abs_(w - 0.25)
    + 2**-6 * u * t * sign(2.0 * w - 1.0),
    dt=2**-3 * y0 * x1 - 2**-3 * x0 * y1 - 2**-2 * u * t,
    traces={"x1": Trace(1.0, 10 * DT), "y1": Trace(0.5, 12 * DT)},
    t_epoch=2,
    u_exponent=1,
    params={"eta": 2**-6},
    name="exotic",
)

BUILTIN_STRINGS = {
    "stdp": (STDP, {"dw": "2^-5 * y0 * x1 - 2^-5 * x0 * y1"}),
    "stdp_multiplicative": (STDP_MULT, {"dw": "2^-5 * y0 * x1 * (1 - w) - 2^-5 * x0 * y1 * w"}),
    "reward_modulated_stdp": (
        RSTDP,
        {"dw": "u0 * t * y2", "dt": "2^-5 * y0 * x1 - 2^-5 * x0 * y1 - 2^-3 * u0 * t"},
    ),
    "modulated_stdp": (MOD_STDP, {"dw": "2^-5 * y0 * x1 * y2 - 2^-5 * x0 * y1 * y2"}),
    "exotic": (
        EXOTIC,
        {
            "dw": "2^-4 * y0 * (x1 - 5404319552844595*2^-54)"
            " + 2^-4 * y0 * (5404319552844595*2^-54 - x1) * w * w"
            " + 2^-4 * x0 * y1 * sgn(w - 2^-2) * (2^-2 - w)"
            " + 2^-6 * u1 * t * sgn(w - 2^-1)",
            "dt": "2^-3 * y0 * x1 - 2^-3 * x0 * y1 - 2^-2 * u1 * t",
        },
    ),
    **{name: case for name, case in REFERENCE.items()},
}


# --------------------------------------------------------------------------------------
# Strings and Lava's parser
# --------------------------------------------------------------------------------------
def lava_products(target, text):
    """Lava's parse of ``text``: sorted (dependency, coefficient, factors) per product."""
    series = ProductSeries(SymbolicEquation(target, text))
    out = []
    for p in series.products:
        coef = p.s_mantissa * 2.0 ** (p.s_exp - 7)
        factors = sorted(((f.state_var, None if f.const is None else float(f.const), f.is_sgn) for f in p.factors), key=repr)
        out.append((p.dependency, coef, factors))
    return sorted(out, key=repr)


def our_products(products):
    out = []
    for p in products:
        factors = sorted(((f.var, f.const, f.sgn) for f in p.factors), key=repr)
        out.append((p.dependency, p.coef, factors))
    return sorted(out, key=repr)


@pytest.mark.parametrize("case", sorted(BUILTIN_STRINGS))
def test_strings_are_what_a_person_writes_and_lava_parses_them_exactly(case):
    rule, expected = BUILTIN_STRINGS[case]
    strings = to_loihi_strings(rule)
    assert strings == expected
    products = lower_products(rule)
    for target, text in strings.items():
        # Bit-exact: Lava's mantissa/exponent and bracket constants are our floats.
        assert lava_products(target, text) == our_products(products[target])


@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_reference_rules_lower_to_the_hand_written_lava_rules(case):
    rule, hand_written = REFERENCE[case]
    lowered = to_loihi_rule(rule, DT)
    by_hand = Loihi2FLearningRule(**hand_written, t_epoch=rule.t_epoch)
    for target in hand_written:
        assert str(getattr(lowered.rule, target)) == str(getattr(by_hand, target))
    for name, tr in rule.traces.items():
        assert getattr(lowered.rule, f"{name}_impulse") == tr.impulse
        assert getattr(lowered.rule, f"{name}_tau") == pytest.approx(tr.tau / DT, rel=1e-12)
    assert lowered.rule.t_epoch == rule.t_epoch
    assert lowered.sign_mode == SignMode.MIXED and not lowered.three_factor


def test_scaling_constants_agree_with_lavas_parser():
    """loihi_scaling accepts exactly what Lava's parser accepts, with the same value."""
    checked = 0
    for m in range(-20, 21):
        for e in range(-11, 13):
            c = m * 2.0**e
            if c == 0:
                continue
            ours = loihi_scaling(c)
            if ours is None:
                # Any spelling of an unrepresentable constant is rejected by Lava too.
                with pytest.raises(ValueError):
                    ProductSeries(SymbolicEquation("dw", f"{m}*2^{e} * y0"))
                continue
            assert ours[0] * 2.0 ** ours[1] == c
            text = format_products(lower_products(LearningRule(dw=c * y0 * x1, traces={"x1": Trace(1.0, 0.01)}))["dw"])
            (dep, coef, _), = lava_products("dw", text)
            assert (dep, coef) == ("y0", c)
            checked += 1
    assert checked > 200


@pytest.mark.parametrize("value", [0.3, 1 / 3, -0.1, 1e-9, 12345.678, 2.0**-30, 7.0])
def test_bracket_constants_are_exact_for_any_float(value):
    rule = LearningRule(dw=2**-3 * y0 * (w + value))
    (text,) = to_loihi_strings(rule).values()
    (dep, coef, factors), = lava_products("dw", text)
    assert (dep, coef, factors) == ("y0", 2**-3, [("w", value, False)])


def test_many_factors_are_accepted():
    """Lava 0.10 sets no limit on factors per product (nor on products)."""
    rule = LearningRule(
        dw=2**-7 * y0 * x1 * x2 * y1 * y2 * w * w * t,
        traces={k: Trace(1.0, 0.01) for k in ("x1", "x2", "y1", "y2")},
    )
    strings = to_loihi_strings(rule)
    assert strings == {"dw": "2^-7 * y0 * x1 * x2 * y1 * y2 * w * w * t"}
    to_loihi_rule(rule, DT)


def test_taus_epochs_and_sign_modes():
    rule = LearningRule(
        dw=2**-4 * y0 * x1 - 2**-4 * x0 * y1,
        traces={"x1": Trace(0.5, 20e-3), "y1": Trace(2.0)},  # y1 never decays
        t_epoch=3,
        w_min=0.0,
    )
    lowered = to_loihi_rule(rule, 0.5e-3)
    assert lowered.rule.x1_tau == pytest.approx(40.0) and lowered.rule.x1_impulse == 0.5
    assert lowered.rule.y1_tau == INF and lowered.rule.y1_impulse == 2.0
    assert lowered.rule.t_epoch == 3
    assert lowered.sign_mode == SignMode.EXCITATORY
    assert lowered.dense_kwargs() == {"learning_rule": lowered.rule, "sign_mode": SignMode.EXCITATORY}
    assert weight_sign_mode(replace(rule, w_min=-INF, w_max=0.0)) == "inhibitory"
    assert weight_sign_mode(replace(rule, w_min=-INF)) == "mixed"
    assert to_loihi_rule(replace(rule, w_min=-INF, w_max=0.0), DT).sign_mode == SignMode.INHIBITORY
    with pytest.raises(ValueError, match="dt"):
        to_loihi_rule(rule, 0.0)


def test_driven_traces_take_the_three_factor_path():
    lowered = to_loihi_rule(RSTDP, DT)
    assert isinstance(lowered.rule, Loihi3FLearningRule) and lowered.three_factor
    assert lowered.post_traces == {
        "y1": PostTrace("y1", None, 1.0, pytest.approx(20.0)),
        "y2": PostTrace("y2", "third_factor"),
    }
    # Held, not decayed by exp(-1/65535) per step as Lava's default would.
    assert lowered.rule.y1_tau == lowered.rule.y2_tau == lowered.rule.y3_tau == INF
    assert lowered.rule.x1_tau == pytest.approx(20.0)
    assert not to_loihi_rule(STDP, DT).three_factor
    # A driven trace that no target reads does not force the 3-factor path.
    unused = replace(STDP, traces={**STDP.traces, "y3": Trace(driven_by="v")})
    assert isinstance(to_loihi_rule(unused, DT).rule, Loihi2FLearningRule)


# --------------------------------------------------------------------------------------
# Lava network vs torch engine
# --------------------------------------------------------------------------------------
DV, DU = 0.1, 0.2
STEPS = 500
N_IN, N_OUT = 16, 6


def run(rule, spikes, w0, third_factor=None, lava=False):
    """The lowered rule in the exported Lava graph (``lava=True``) or in the torch engine."""
    net = Network(dt=DT)
    net.input("inp", N_IN)
    # Lava's LIF with dv = DV, du = DU (export/lava.py maps tau_mem = dt/dv, tau_syn = dt/du).
    net.population("lif", N_OUT, LIF(tau_mem=DT / DV, tau_syn=DT / DU, v_th=1.0))
    net.connect("inp", "lif", w0, rule=rule, name="dense")
    monitors = ["lif.spikes", "dense.w"] + (["dense.t"] if rule.dt is not None else [])
    if lava:
        tf = None if third_factor is None else {"lif": third_factor}
        rec = run_lava(net, STEPS, {"inp": spikes}, monitors=monitors, third_factors=tf)
    else:
        tf = None if third_factor is None else {"lif": torch.as_tensor(third_factor)[:, None, :]}
        rec = Simulator(net, dtype=torch.float64).run(STEPS, {"inp": spikes}, third_factors=tf, monitors=monitors)
    out = {"spikes": rec["lif.spikes"][:, 0].numpy(), "w": rec["dense.w"][:, 0].numpy()}
    if rule.dt is not None:
        out["t"] = rec["dense.t"][:, 0].numpy()
    return out


MODULATED = LearningRule(
    dw=2**-3 * y0 * x1 * y2 - 2**-5 * u * x1 * y2 * w,
    traces={"x1": Trace(1.0, 15 * DT), "y2": Trace(driven_by="third_factor")},
    t_epoch=2,
    name="modulated_hebb",
)

NETWORK_CASES = {
    # name: (rule, input rate, w0 range, third factor?)
    "stdp_excitatory": (STDP, 0.15, (0.0, 0.6), False),
    "stdp_multiplicative": (STDP_MULT, 0.15, (0.0, 0.6), False),
    "exotic_epoch2": (EXOTIC, 0.2, (0.0, 0.6), False),
    "third_factor_epoch2": (MODULATED, 0.2, (0.1, 0.6), True),
}


@pytest.mark.parametrize("case", sorted(NETWORK_CASES))
def test_lowered_rule_in_lava_matches_torch_engine(case):
    rule, rate, (lo, hi), with_factor = NETWORK_CASES[case]
    rng = np.random.default_rng(5)
    spikes = (rng.random((STEPS, N_IN)) < rate).astype(np.float64)
    w0 = rng.uniform(lo, hi, (N_OUT, N_IN))
    factor = rng.normal(0.0, 1.0, (STEPS, N_OUT)) if with_factor else None
    lowered = to_loihi_rule(rule, DT)
    ref = run(rule, spikes, w0, factor, lava=True)
    ours = run(rule, spikes, w0, factor)

    assert ref["spikes"].sum() > 100, "too little post activity for a meaningful comparison"
    np.testing.assert_array_equal(ours["spikes"], ref["spikes"])
    np.testing.assert_allclose(ours["w"], ref["w"], rtol=1e-5, atol=1e-9)
    assert np.abs(ref["w"][-1] - w0).max() > 0.05, "weights barely moved"
    if rule.dt is not None:
        np.testing.assert_allclose(ours["t"], ref["t"], rtol=1e-5, atol=1e-9)
        assert np.abs(ref["t"]).max() > 0.05
    if lowered.sign_mode == SignMode.EXCITATORY and case == "stdp_excitatory":
        assert (ref["w"] == 0).any(), "the sign-mode clipping was never exercised"


def test_network_comparison_can_fail():
    """Negative control: the same run with a coefficient off by 2^-7 is caught."""
    rng = np.random.default_rng(5)
    spikes = (rng.random((STEPS, N_IN)) < 0.15).astype(np.float64)
    w0 = rng.uniform(0.0, 0.6, (N_OUT, N_IN))
    ref = run(STDP.with_params(a_plus=2**-5 + 2**-7), spikes, w0, lava=True)
    ours = run(STDP, spikes, w0)
    assert not np.allclose(ours["w"], ref["w"], rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------------------
# Errors: name the product, say why, suggest the hardware form
# --------------------------------------------------------------------------------------
TR = {"x1": Trace(1.0, 0.02), "y1": Trace(1.0, 0.02), "y2": Trace(1.0, 0.02)}


def _rule(dw, **kw):
    return LearningRule(dw=dw, traces=kw.pop("traces", TR), **kw)


ERRORS = {
    "softmax": (
        _rule(0.1 * y0 * softmax(y2)),
        ["dw", "'0.1 * y0 * softmax(y2, 1.0)'", "post population", "winner-take-all", "y0"],
    ),
    "abs_of_trace_minus_constant": (
        _rule(2**-3 * y0 * abs_(x1 - 0.5)),
        ["'0.125 * y0 * abs((x1 - 0.5))'", "no absolute value", "sgn(", "negative projection"],
    ),
    "division_by_variable": (
        _rule(2**-3 * y0 * (x1 / w)),
        ["'0.125 * y0 * x1 * (1.0 / w)'", "no division on chip", "reciprocal"],
    ),
    "exp": (_rule(2**-3 * y0 * exp(x1)), ["'0.125 * y0 * exp(x1)'", "multiplies and adds only", "trace"]),
    "fractional_power": (_rule(2**-3 * y0 * x1**0.5), ["'0.125 * y0 * pow(x1, 0.5)'", "fractional", "remove it"]),
    "infinite_power": (_rule(2**-3 * y0 * x1**math.inf), ["'0.125 * y0 * pow(x1, inf)'", "remove it"]),
    "negative_power": (_rule(2**-3 * y0 * w**-1.0), ["'0.125 * y0 * pow(w, -1.0)'", "negative"]),
    "clamp": (
        _rule(2**-3 * y0 * clamp(x1 - w, 0.0, 1.0)),
        ["'0.125 * y0 * clamp((x1 - w), 0.0, 1.0)'", "no clipping", "w_min=0", "soft bound"],
    ),
    "maximum": (_rule(2**-3 * y0 * maximum(x1, w)), ["maximum(x1, w)", "no clipping", "EXCITATORY"]),
    "minimum": (_rule(2**-3 * y0 * minimum(x1, w)), ["minimum(x1, w)", "no clipping", "INHIBITORY"]),
    "sign_of_a_sum_of_two_variables": (
        _rule(2**-3 * y0 * sign(x1 - w)),
        ["'0.125 * y0 * sign((x1 - w))'", "sum of several variables", "sgn(w + C)", "sgn(t)"],
    ),
    "sign_of_a_trace": (_rule(2**-3 * y0 * sign(x1 - 0.5)), ["sign((x1 - 0.5))", "the trace x1", "x0/y0"]),
    "second_dependency": (
        _rule(2**-3 * y0 * x0 * x1),
        ["'0.125 * y0 * x0 * x1'", "second dependency", "Unknown Factor", "one dependency per product"],
    ),
    "coefficient_not_representable": (
        _rule(0.01 * y0 * x1),
        ["'0.01 * y0 * x1'", "m in [-8, 7] and e in [-7, 8]", "2^-7 (= 0.0078125)", "2^-6 (= 0.015625)", "impulse"],
    ),
    "coefficient_too_small": (_rule(2**-9 * y0 * x1), ["'0.001953125 * y0 * x1'", "2^-7", "impulse"]),
    "param_coefficient": (
        _rule(Param("eta") * y0 * x1, params={"eta": 0.01}),
        ["'0.01 * y0 * x1'", "with_params"],
    ),
    "weight_bounds": (
        standard_rules.stdp(a_plus=2**-5, a_minus=2**-5),
        ["'w in [0, 1]'", "no arbitrary weight clipping", "w_max=math.inf", "soft-bound", "(w_max - w)"],
    ),
    "negative_impulse": (
        _rule(2**-3 * y0 * x1, traces={"x1": Trace(-1.0, 0.02)}),
        ["'x1 impulse -1'", "non-negative", "impulse 1", "flip the sign"],
    ),
    "u_exponent_two_digits": (_rule(2**-3 * u * x1, u_exponent=12), ["u_exponent=12", "one digit", "u_exponent <= 9"]),
    "three_factor_long_epoch": (
        standard_rules.modulated_stdp(a_plus=2**-5, a_minus=2**-5, t_epoch=2),
        ["'-0.03125 * x0 * y1 * y2'", "3-factor path", "y1", "t_epoch=1"],
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_unsupported_rules_raise_with_term_and_suggestion(case):
    rule, fragments = ERRORS[case]
    with pytest.raises(LoihiLoweringError) as info:
        to_loihi_rule(rule, DT)
    message = str(info.value)
    assert f"rule {rule.name!r}" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    assert "Suggestion:" in message
    assert isinstance(info.value, ValueError)


def test_products_that_are_errors_elsewhere_are_caught_by_to_loihi_strings_too():
    with pytest.raises(LoihiLoweringError, match="softmax"):
        to_loihi_strings(_rule(0.1 * y0 * softmax(y2)))


def test_exact_rewrites_instead_of_errors():
    """Identities that keep a rule on chip: x0*x0 = x0, u0 = 1, integer powers, |x1| = x1."""
    rule = _rule(2**-3 * x0 * x0 * y1 + 2**-3 * u * y0 * x1 + 2**-4 * x0 * (w - 0.5) ** 2 + 2**-4 * y0 * abs_(x1))
    strings = to_loihi_strings(rule)
    assert strings == {
        "dw": "2^-3 * x0 * y1 + 3*2^-4 * y0 * x1 + 2^-4 * x0 * (w - 1) * w + 2^-6 * x0"
    }
    assert lava_products("dw", strings["dw"]) == our_products(lower_products(rule)["dw"])
    # With longer epochs u0 * y0 * x1 samples x1 at the epoch end, y0 * x1 at the spike.
    with pytest.raises(LoihiLoweringError, match="second dependency"):
        to_loihi_strings(_rule(2**-3 * u * y0 * x1, t_epoch=2))
    assert to_loihi_strings(_rule(2**-3 * u * y0 * w, t_epoch=2)) == {"dw": "2^-3 * y0 * w"}


def test_lowering_problems_lists_every_reason():
    rule = LearningRule(
        dw=0.1 * y0 * softmax(y2) + 0.01 * x0 * y1 - 2**-3 * u * w,
        traces={"y1": Trace(1.0, 0.02), "y2": Trace(1.0, 0.02)},
        w_min=0.0,
        w_max=1.0,
    )
    problems = [str(p) for p in lowering_problems(rule)]
    assert len(problems) == 3, problems
    assert any("w in [0, 1]" in p for p in problems)
    assert any("softmax(y2, 1.0)" in p for p in problems)
    assert any("'0.01 * x0 * y1'" in p for p in problems)
    assert lowering_problems(STDP) == []
