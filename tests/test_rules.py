"""The rule language: building, validation, expansion and safe serialization."""
import json
import math

import pytest

from neuro import (
    LearningRule,
    Param,
    RuleError,
    Trace,
    Var,
    abs_,
    clamp,
    expand_terms,
    expr_from_data,
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
    y3,
)

ALL_RULES = [
    standard_rules.stdp(),
    standard_rules.stdp(multiplicative=True, t_epoch=4),
    standard_rules.reward_modulated_stdp(),
    standard_rules.modulated_stdp(),
    LearningRule(
        dw=0.1 * u * softmax(y2, temperature=0.5) * (x1 - y2 * w) + abs_(x2) * x0 * 2 - clamp(y3, -1, 1) * y0,
        dt=u * (abs_(w) - t) / 4,
        dd=x0 * y0 * 3,
        traces={
            "x1": Trace(0.5, 10e-3),
            "x2": Trace(1.0, math.inf),
            "y2": Trace(driven_by="v"),
            "y3": Trace(2.0, 5e-3),
        },
        t_epoch=3,
        u_exponent=1,
        w_min=-2.0,
        name="kitchen_sink",
    ),
]


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.name)
def test_rule_round_trips_through_json(rule):
    text = json.dumps(rule.to_data())
    back = LearningRule.from_data(json.loads(text))
    assert back == rule
    assert back.to_data() == rule.to_data()
    assert str(back) == str(rule)


def test_expansion_distributes_products_and_finds_dependencies():
    terms = expand_terms(0.5 * (y0 * x1 - x0 * y1) * (1.0 - w), "dw")
    got = sorted((tm.dependency, tm.coef, tuple(str(f) for f in tm.factors)) for tm in terms)
    assert got == sorted(
        [
            ("y0", 0.5, ("x1",)),
            ("y0", -0.5, ("x1", "w")),
            ("x0", -0.5, ("y1",)),
            ("x0", 0.5, ("y1", "w")),
        ]
    )


def test_second_dependency_is_a_plain_factor():
    (term,) = expand_terms(x0 * y0 * 2.0)
    assert term.dependency == "x0" and [str(f) for f in term.factors] == ["y0"] and term.coef == 2.0


def test_product_without_dependency_is_rejected_with_advice():
    with pytest.raises(RuleError, match="no dependency.*x0.*y0.*u"):
        LearningRule(dw=0.1 * x1 * y1 + y0 * x1, traces={"x1": Trace(1, 1e-2), "y1": Trace(1, 1e-2)})


def test_unknown_variable_is_rejected():
    with pytest.raises(RuleError, match="unknown rule variable 'z1'"):
        Var("z1")
    with pytest.raises(RuleError, match="unknown rule variable 'x3'"):
        expr_from_data({"op": "mul", "args": [{"var": "x0"}, {"var": "x3"}]})


def test_trace_used_but_not_configured():
    with pytest.raises(RuleError, match="reads trace 'x2'.*no Trace"):
        LearningRule(dw=x0 * x2)


@pytest.mark.parametrize("tau", [0.0, -1e-3, float("nan"), "fast"])
def test_bad_tau(tau):
    with pytest.raises(RuleError, match="tau"):
        Trace(1.0, tau)


def test_bad_targets_and_epochs():
    with pytest.raises(RuleError, match="no target"):
        LearningRule()
    with pytest.raises(TypeError):
        LearningRule(dx=x0)  # not a target
    with pytest.raises(RuleError, match="t_epoch"):
        LearningRule(dw=x0 * 1.0, t_epoch=0)
    with pytest.raises(RuleError, match="w_min < w_max"):
        LearningRule(dw=x0 * 1.0, w_min=1.0, w_max=0.0)
    with pytest.raises(RuleError, match="must be a rule expression"):
        LearningRule(dw=0.5)


def test_driven_pre_trace_and_bad_driver_rejected():
    with pytest.raises(RuleError, match="only post traces"):
        LearningRule(dw=x0 * x1, traces={"x1": Trace(driven_by="v")})
    with pytest.raises(RuleError, match="unknown trace driver"):
        Trace(driven_by="dopamine")


def test_params_need_values_and_can_be_replaced():
    with pytest.raises(RuleError, match="no value for parameter"):
        LearningRule(dw=Param("eta") * x0)
    rule = standard_rules.stdp(a_plus=0.01)
    assert rule.with_params(a_plus=0.02).params["a_plus"] == 0.02
    with pytest.raises(RuleError, match="no parameter"):
        rule.with_params(eta=1.0)


def test_expressions_reject_non_numbers_and_truth_tests():
    with pytest.raises(RuleError, match="cannot use"):
        x0 * "0.1"
    with pytest.raises(RuleError, match="no truth value"):
        bool(x0 + 1)


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "must be a mapping"),
        ({"format": "pickle"}, "not a neuro rule"),
        ({**standard_rules.stdp().to_data(), "evil": "__import__('os')"}, "unknown key"),
        ({**standard_rules.stdp().to_data(), "dw": {"op": "system", "args": []}}, "unknown rule operation"),
        ({**standard_rules.stdp().to_data(), "dw": {"code": "print(1)"}}, "unrecognized rule expression node"),
        ({**standard_rules.stdp().to_data(), "dw": {"const": "1e3"}}, "constant must be a number"),
        ({**standard_rules.stdp().to_data(), "dw": {"op": "mul", "args": [{"var": "x0"}]}}, "takes 2"),
        ({**standard_rules.stdp().to_data(), "t_epoch": 1.5}, "t_epoch must be an integer"),
        ({**standard_rules.stdp().to_data(), "traces": {"x1": {"impulse": 1, "tau": -2}}}, "tau"),
        ({**standard_rules.stdp().to_data(), "params": {"a_plus": "big"}}, "must be a number"),
    ],
)
def test_malformed_rule_data_is_rejected_clearly(data, message):
    with pytest.raises(RuleError, match=message):
        LearningRule.from_data(data)


def test_deeply_nested_data_is_rejected_not_crashing():
    node = {"var": "x0"}
    for _ in range(200):
        node = {"op": "neg", "args": [node]}
    with pytest.raises(RuleError, match="nested deeper"):
        expr_from_data(node)


def test_a_product_divided_by_a_parameter_keeps_its_dependencies():
    """(y0 x1 - x0 y1) / eta is the same rule as (y0 x1 - x0 y1) * (1 / eta), on the torch engine and natively."""
    import torch

    from neuro import LIF, Network, Param, Simulator, Trace, x0, x1, y0, y1
    from neuro.native import compiler

    traces = {"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 10e-3)}
    divided = LearningRule(dw=(y0 * x1 - x0 * y1) / Param("eta"), params={"eta": 2.0}, traces=traces)
    assert [t.dependency for t in divided.terms()["dw"]] == ["y0", "x0"]
    halved = LearningRule(dw=(y0 * x1 - x0 * y1) * 0.5, traces=traces)
    spikes = (torch.rand(30, 4, generator=torch.Generator().manual_seed(1)) < 0.3).double()
    weights = []
    for rule, native in [(halved, False), (divided, False)] + ([(divided, True)] if compiler() else []):
        net = Network()
        net.input("i", 4)
        net.population("o", 3, LIF(v_th=0.3))
        net.connect("i", "o", 0.5, rule=rule, name="ff")
        sim = Simulator(net, dtype=torch.float64, native=native)
        sim.run(30, {"i": spikes})
        weights.append(sim.weights("ff"))
    assert not torch.equal(weights[0], torch.full_like(weights[0], 0.5))
    for w in weights[1:]:
        torch.testing.assert_close(w, weights[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(RuleError, match="no dependency"):
        LearningRule(dw=x1 / (y0 + 1.0), traces=traces)  # a dependency under the division cannot trigger
