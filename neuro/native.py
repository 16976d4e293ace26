"""A native CPU loop: the whole run of a network, event-driven, as C++ generated from its description.

``Simulator(net, native=True)`` compiles, once per network description, a C++ function that runs any
number of steps with no Python in between: the neuron updates, the synaptic propagation of the neurons
that spiked (by column, or by the synapse lists of a masked projection), and each learning rule's epochs
with its products evaluated on the synapses of the neurons that spiked (on every synapse in the epochs
where a ``u`` product is on). It is the torch engine's event-driven step, in the same order and with the
same float operations (Norse's LIF update, Lava's learning-epoch semantics), written out per neuron and
per synapse: on a 2-core CPU a step of a sparse network costs microseconds instead of the ~500 us of
Python dispatch of ~275 torch operations. Sums over spikes may add in another order than the torch
engine's matrix products, so results agree to rounding (tested in float64).

The generated source holds numbers and fixed code only (nothing from a model file is pasted in but
floats, written by ``float.__repr__``), is compiled by the system's C++ compiler (``c++``, ``g++`` or
``$CXX``; ``FLAGS``: ``-O3 -ffp-contract=off``, so no fused multiply-adds change the rounding, and no flag
that reorders floating-point arithmetic) into a shared
library cached by the hash of its source (``$NEURO_NATIVE_CACHE``, default ``~/.cache/neuro/native``),
and called through ``ctypes`` with the simulator's own tensors, which it updates in place.

Not supported (each refused by name): rules with operations across neurons (``softmax``, ``winner``,
``sum_pre``), a device other than the CPU, dtypes other than float32 and float64.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from tqdm.auto import tqdm

from neuro.expr import MIXING_OPS, POST_TRACES, PRE_TRACES, Const, Expr, Op, Param, Var
from neuro.graph import InputPopulation
from neuro.neurons import IAF, LIF
from neuro.plasticity import TRACE_INDEX
from neuro.recording import count_monitor

if TYPE_CHECKING:  # the engine imports this module
    from neuro.engine import Simulator
    from neuro.recording import Recorder


#: Calls of at least this many steps keep sparse projections' synapses in compact arrays (see
#: ``NativeLoop._compact``); shorter ones (monitors recorded every few steps) work on the dense tensors.
COMPACT_STEPS = 8


class NativeError(ValueError):
    """The network, its rules or the machine cannot run the native loop; the message says what."""


def compiler() -> Optional[str]:
    """The C++ compiler the native loop uses (``$CXX``, ``c++`` or ``g++``), or ``None``."""
    for c in (os.environ.get("CXX"), "c++", "g++"):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


def _lit(x: float) -> str:
    """A C++ literal of the double ``x`` (cast to the loop's type where it is used)."""
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INFINITY" if x > 0 else "(-INFINITY)"
    return f"S({float(x)!r})"


class _Source:
    """Lines of C++ with indentation."""

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.depth = 0

    def __call__(self, line: str = "") -> None:
        self.lines.append("    " * self.depth + line if line else "")

    def block(self, head: str) -> "_Block":
        return _Block(self, head)


class _Block:
    def __init__(self, src: _Source, head: str) -> None:
        self.src, self.head = src, head

    def __enter__(self) -> None:
        self.src(self.head + " {")
        self.src.depth += 1

    def __exit__(self, *exc) -> None:
        self.src.depth -= 1
        self.src("}")


class NativeLoop:
    """The compiled loop of one simulator (see the module docstring)."""

    def __init__(self, sim: "Simulator") -> None:
        self.sim = sim
        if sim.device.type != "cpu":
            raise NativeError(f"native=True runs on the CPU; this simulator is on {sim.device}")
        if sim.dtype not in (torch.float32, torch.float64):
            raise NativeError(f"native=True runs float32 or float64 state, not {sim.dtype}")
        net = sim.network
        for name, rule in sim.rules.items():
            for target, terms in rule.terms.items():
                for term in terms:
                    for f in term.factors:
                        bad = _mixing(f)
                        if bad:
                            raise NativeError(f"projection {name!r}: {target} uses {bad}(...), an operation across "
                                              "neurons, which the native loop does not run (use the torch engine)")
        self.pops = list(net.populations.values())
        self.projs = list(net.projections.values())
        self.slots: List[Tuple[str, ...]] = []  # what each pointer argument is, in order
        self.source = self._generate()
        self._fn = _load(self.source)

    # --- pointers ------------------------------------------------------------------------------------
    def _slot(self, *what: str) -> str:
        """A pointer argument (one tensor), named ``p<k>`` in the generated code."""
        self.slots.append(what)
        return f"p{len(self.slots) - 1}"

    def _declarations(self) -> List[str]:
        """The pointer arguments as local restrict pointers: no two tensors share memory, so the compiler
        may keep values in registers and vectorise."""
        out = []
        for k, (kind, *_) in enumerate(self.slots):
            ctype = {"tx": "int32_t", "ty": "int32_t", "post_of_pre": "int64_t", "pre_of_post": "int64_t",
                     "slot_of_post": "int64_t"}.get(kind, "S")
            out.append(f"    {ctype}* __restrict const p{k} = ({ctype}*)P[{k}]; (void)p{k};")
        return out

    def _pointers(self, inputs: Mapping[str, torch.Tensor], factors: Mapping[str, torch.Tensor],
                  counts: Mapping[str, torch.Tensor]) -> Tuple[ctypes.Array, List[torch.Tensor]]:
        """The argument array for the compiled function, and the tensors it points into (kept alive)."""
        keep = []
        ptrs = (ctypes.c_void_p * len(self.slots))()
        for k, (kind, *rest) in enumerate(self.slots):
            t = self._tensor(kind, rest, inputs, factors, counts)
            if t is None:
                ptrs[k] = None
                continue
            keep.append(t)
            ptrs[k] = t.data_ptr()
        return ptrs, keep

    def _tensor(self, kind, rest, inputs, factors, counts) -> Optional[torch.Tensor]:
        sim = self.sim
        if kind == "spikes":
            return _own(sim.spikes, rest[0], sim.dtype)
        if kind == "state":
            return _own(sim.state[rest[0]], rest[1], sim.dtype)
        if kind == "buffer":
            return _own(sim.buffers, rest[0], sim.dtype)
        if kind == "syn":
            return _own(sim.syn[rest[0]], rest[1], sim.dtype)
        if kind in ("x", "y"):
            return _own(sim.plastic[rest[0]], kind, sim.dtype)
        if kind in ("tx", "ty"):
            return _own(sim.plastic[rest[0]], kind, torch.int32)
        if kind == "param":
            return _own(sim.params[rest[0]], rest[1], sim.dtype)
        if kind == "post_of_pre":
            return self._tables[rest[0]][0]
        if kind == "pre_of_post":
            return self._tables[rest[0]][1]
        if kind == "slot_of_post":
            return self._tables[rest[0]][2]
        if kind == "input":
            return inputs.get(rest[0])
        if kind == "factor":
            return factors.get(rest[0])
        if kind == "count":
            return counts.get(rest[0])
        raise AssertionError(kind)

    # --- code ------------------------------------------------------------------------------------------
    def _compact(self) -> None:
        """Masked projections that no tie reads keep their synapses, for a call with ``compact`` set, in
        compact pre-major arrays (the existing synapses only, the posts of a pre side by side): gathered
        from the dense ``(M, N)`` tensors at the start, scattered back at the end. A sparse projection's
        synapses then fill a few cache lines instead of one line each."""
        sim = self.sim
        sources = {q.tie.source for q in self.projs if q.tie is not None}
        self.compact = [name for name in sim.masks if name not in sources]
        self.live: Dict[Tuple[str, str], str] = {}
        for q in self.projs:
            if q.tie is not None:
                continue
            for v in (sim.syn[q.name] if q.name in sim.rules else ("w",)):
                dense = self.p_w[q.name] if v == "w" else self.p_syn[(q.name, v)]
                if q.name not in self.compact:
                    self.live[(q.name, v)] = dense
                    continue
                k = self.compact.index(q.name)
                groups, (m, n) = sim.syn[q.name][v].shape[0], sim.syn[q.name][v].shape[1:]
                width = self._tables[q.name][0].shape[1]
                store, live = f"c{k}_{v}", f"L{k}_{v}"
                self._scratch.append(f"std::vector<S> {store}({groups * n * width});")
                self._scratch.append(f"S* __restrict const {live} = compact ? {store}.data() : {dense};")
                post_of_pre = self.p_tab[q.name][0]
                loop = (f"for (int64_t g = 0; g < {groups}; ++g) for (int64_t j = 0; j < {n}; ++j) "
                        f"for (int64_t s_ = 0; s_ < {width}; ++s_) {{ const int64_t i = {post_of_pre}[j * {width} + s_]; "
                        f"if (i < 0) break; ")
                at_c, at_d = f"{store}[(g * {n} + j) * {width} + s_]", f"{dense}[(g * {m} + i) * {n} + j]"
                self._prologue.append(f"if (compact) {loop}{at_c} = {at_d}; }}")
                self._epilogue.append(f"if (compact) {loop}{at_d} = {at_c}; }}")
                self.live[(q.name, v)] = live

    def _at(self, name: str, g: str, i: str, j: str, k: str) -> str:
        """Index of synapse ``(i, j)`` (compact slot ``k``) of group ``g`` in projection ``name``'s live arrays."""
        m, n = self.sim.syn[name]["w"].shape[1:]
        dense = f"(({g}) * {m} + ({i})) * {n} + ({j})"
        if name not in self.compact:
            return dense
        size = self.sim.masks[name].shape[1] * self._tables[name][0].shape[1]
        return f"(compact ? ({g}) * {size} + ({k}) : {dense})"

    def _generate(self) -> str:
        sim, net = self.sim, self.sim.network
        R = sim.replicas
        src = _Source()
        src.depth += 1
        self._macros: List[str] = []
        self._functions: List[str] = []
        self._prologue: List[str] = []
        self._epilogue: List[str] = []
        self._scratch: List[str] = []
        self._tables: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
        size = {p.name: p.n for p in self.pops}
        self.lists = {p.name: (f"spk_list_{k}", f"n_spk_{k}") for k, p in enumerate(self.pops)}
        # pointers of state
        self.p_spk = {p.name: self._slot("spikes", p.name) for p in self.pops}
        self.p_state = {}
        for p in self.pops:
            if isinstance(p, InputPopulation):
                continue
            names = ("v", "i", "theta") if isinstance(p.model, LIF) else ("v",)
            self.p_state[p.name] = {n: self._slot("state", p.name, n) for n in names}
        self.p_in = {p.name: self._slot("input", p.name) for p in self.pops if isinstance(p, InputPopulation)}
        self.p_count = {p.name: self._slot("count", p.name) for p in self.pops}
        self.p_buf = {q.name: self._slot("buffer", q.name) for q in self.projs}
        self.p_w = {q.name: self._slot("syn", q.name, "w") for q in self.projs if q.tie is None}
        self.p_syn = {(name, v): (self.p_w[name] if v == "w" else self._slot("syn", name, v))
                      for name in sim.rules for v in sim.syn[name]}
        for name, mask in sim.masks.items():
            self._tables[name] = _tables(mask)
        self.p_tab = {name: (self._slot("post_of_pre", name), self._slot("pre_of_post", name),
                             self._slot("slot_of_post", name)) for name in sim.masks}
        self._compact()
        self.p_factor = {}
        for name, rule in sim.rules.items():
            post = net.projections[name].post
            if "third_factor" in rule.driven.values() and post not in self.p_factor:
                self.p_factor[post] = self._slot("factor", post)
        src("const int64_t R = %d;" % R)
        for index in range(len(sim.rules)):
            src(f"int64_t clip_all_{index} = clamp_all[{index}];  // weights set since the last epoch: clip them all")
        src("(void)R;")
        with src.block("for (int64_t s = 0; s < steps; ++s)"):
            src("const int64_t ts = ts0 + s + 1;  // this step's number, from 1")
            src("(void)ts;")
            self._neurons(src, size)
            self._propagate(src, size)
            with src.block("if (learning)"):
                for index, name in enumerate(sim.rules):
                    self._learn(src, index, name, size)
        head = [
            "// generated by neuro.native from a network description: numbers and fixed code only",
            "#include <cmath>", "#include <cstdint>", "#include <cstring>", "#include <vector>",
            f"typedef {'double' if sim.dtype == torch.float64 else 'float'} S;",
            "static inline S clampv(S x, S lo, S hi) { return x < lo ? lo : (x > hi ? hi : x); }",
            "static inline S signv(S x) { return (S)((x > 0) - (x < 0)); }",
            *self._macros,
            *self._functions,
            'extern "C" void run(void** P, int64_t steps, int64_t ts0, int64_t learning, const int64_t* clamp_all,'
            ' int64_t compact) {',
            *self._declarations(),
            *("    " + line for line in self._scratch + self._prologue),
        ]
        return "\n".join(head + src.lines + ["    " + line for line in self._epilogue] + ["}"]) + "\n"

    def _neurons(self, src: _Source, size: Dict[str, int]) -> None:
        for pop in self.pops:
            n = pop.n
            spk = self.p_spk[pop.name]
            src(f"// population {pop.name!r}")
            if isinstance(pop, InputPopulation):
                inp = self.p_in[pop.name]
                with src.block(f"for (int64_t q = 0; q < R * {n}; ++q)"):
                    src(f"{spk}[q] = {inp} ? (S)({inp}[s * R * {n} + q] > 0) : S(0);")
                self._count(src, pop.name, n)
                self._list(src, pop.name, n)
                continue
            plain = [q for q in self.projs if q.post == pop.name and not q.gated]
            gated = [q for q in self.projs if q.post == pop.name and q.gated]
            m = pop.model
            # A function of its own, whose restrict parameters let the compiler vectorise the loop.
            names = list(self.p_state[pop.name])
            params = ([f"S* __restrict b{k}" for k in range(len(plain))]
                      + [f"S* __restrict g{k}" for k in range(len(gated))]
                      + [f"S* __restrict {v}_" for v in names] + ["S* __restrict spk_"])
            args = ([self.p_buf[q.name] for q in plain] + [self.p_buf[q.name] for q in gated]
                    + [self.p_state[pop.name][v] for v in names] + [spk])
            fn = _Source()
            index = len(self._functions)
            with fn.block(f"static void neurons_{index}(int64_t count, {', '.join(params)})"):
                with fn.block("for (int64_t q = 0; q < count; ++q)"):
                    fn(f"S c = {_sum_code([f'b{k}[q]' for k in range(len(plain))])};")
                    # read once, so emptied here: the propagation after adds into zeros
                    fn(" ".join(f"b{k}[q] = 0;" for k in range(len(plain))))
                    st = {v: f"{v}_" for v in names}
                    if isinstance(m, IAF):
                        self._iaf(fn, m, st, "spk_")
                    else:
                        self._lif(fn, m, st, "spk_", len(gated))
            self._functions.extend(fn.lines)
            src(f"neurons_{index}(R * {n}, {', '.join(args)});")
            self._count(src, pop.name, n)
            self._list(src, pop.name, n)

    def _list(self, src: _Source, pop: str, n: int) -> None:
        """The population's spikes this step as a list of flat indices ``r * n + k``, in increasing order
        (the order in which the engine's event-driven sums add them)."""
        lst, cnt = self.lists[pop]
        self._scratch.append(f"std::vector<int64_t> {lst}({self.sim.replicas * n});")
        src(f"int64_t {cnt} = 0;")
        # without a branch: the write is cheap, a mispredicted jump per spike is not
        src(f"for (int64_t q = 0; q < R * {n}; ++q) {{ {lst}[{cnt}] = q; {cnt} += {self.p_spk[pop]}[q] > 0; }}")

    def _iaf(self, src: _Source, m: IAF, st: Dict[str, str], spk: str) -> None:
        """Norse's iaf_feed_forward_step on neuron ``q`` with input ``c``."""
        src(f"S v = {st['v']}[q] + c;")
        src(f"S z = (S)((v - {_lit(m.v_th)}) > 0);")
        src(f"{st['v']}[q] = (S(1) - z) * v + z * {_lit(m.v_reset)};")
        src(f"{spk}[q] = z;")

    def _lif(self, src: _Source, m: LIF, st: Dict[str, str], spk: str, gated: int) -> None:
        """``LIF.step`` (Norse's lif_feed_forward_step and the model's extras) on neuron ``q`` with input ``c``."""
        sim = self.sim
        src(f"S v = {st['v']}[q], i = {st['i']}[q], theta = {st['theta']}[q];")
        if gated:
            src(f"S g = {_sum_code([f'g{k}[q]' for k in range(gated)])};")
            src(" ".join(f"g{k}[q] = 0;" for k in range(gated)))
            src(f"c = c + ((i > {_lit(m.gate_min)} && i < {_lit(m.gate_max)}) ? g : S(0));")
        src(f"S vth = {_lit(m.v_th)} + theta;")
        if m.bounded:
            src(f"c = clampv(i + c, {_lit(m.i_min)}, {_lit(m.i_max)}) - i;")
        # Norse's lif_feed_forward_step, operation by operation
        a_mem = f"(S({sim.dt!r}) * {_lit(1.0 / m.tau_mem)})"
        a_syn = f"(S({-sim.dt!r}) * {_lit(1.0 / m.tau_syn)})"
        src("S i_new = i + c;")
        src(f"S v_dec = v + {a_mem} * (({_lit(m.v_leak)} - v) + i_new);")
        src(f"S i_dec = i_new + {a_syn} * i_new;")
        if m.syn_leak != "both":
            held = {"positive": "i_new <= S(0)", "negative": "i_new >= S(0)", "none": "true"}[m.syn_leak]
            src(f"i_dec = ({held}) ? i_new : i_dec;")
        src("S z = (S)((v_dec - vth) > 0);  // a value, not a branch: the loop vectorises")
        src(f"S v_new = (S(1) - z) * v_dec + z * {_lit(m.v_reset)};")
        if m.subtract_reset:
            src(f"if (z > 0) v_new = v_dec - (vth - {_lit(m.v_reset)});")
        if not math.isinf(m.v_min):
            src(f"v_new = v_new < {_lit(m.v_min)} ? {_lit(m.v_min)} : v_new;")
        if m.theta_plus > 0:
            decay = 1.0 if math.isinf(m.tau_theta) else math.exp(-sim.dt / m.tau_theta)
            src(f"{st['theta']}[q] = theta * {_lit(decay)} + {_lit(m.theta_plus)} * z;")
        src(f"{st['v']}[q] = v_new; {st['i']}[q] = i_dec; {spk}[q] = z;")

    def _count(self, src: _Source, pop: str, n: int) -> None:
        cnt, spk = self.p_count[pop], self.p_spk[pop]
        with src.block(f"if ({cnt})"):
            src(f"for (int64_t q = 0; q < R * {n}; ++q) {cnt}[q] += {spk}[q];")

    def _weight(self, q, rw: str, i: str, j: str, k: str = "0") -> str:
        """C++ for the weight of projection ``q`` from pre ``j`` to post ``i`` (compact slot ``k``) in weight
        group ``rw``."""
        net = self.sim.network
        if q.tie is None:
            return f"{self.live[(q.name, 'w')]}[{self._at(q.name, rw, i, j, k)}]"
        source = net.projections[q.tie.source]
        m, n = net.populations[source.post].n, net.populations[source.pre].n
        si, sj = (j, i) if q.tie.transpose else (i, j)
        return f"({_lit(q.tie.scale)} * {self.p_w[source.name]}[({rw} * {m} + {si}) * {n} + {sj}])"

    def _groups(self, q) -> int:
        """Weight groups of a projection: 1 (shared) or R."""
        name = q.tie.source if q.tie is not None else q.name
        return self.sim.syn[name]["w"].shape[0]

    def _propagate(self, src: _Source, size: Dict[str, int]) -> None:
        for q in self.projs:
            m, n = size[q.post], size[q.pre]
            buf = self.p_buf[q.name]
            rw = "0" if self._groups(q) == 1 else "r"
            src(f"// projection {q.name!r}: the columns of the pre neurons that spiked")
            # the buffer was emptied by the neurons that read it (this step's first phase)
            lst, cnt = self.lists[q.pre]
            with src.block(f"for (int64_t e = 0; e < {cnt}; ++e)"):
                src(f"const int64_t r = {lst}[e] / {n}, j = {lst}[e] % {n};")
                if q.name in self.p_tab:
                    post_of_pre = self.p_tab[q.name][0]
                    width = self._tables[q.name][0].shape[1]
                    with src.block(f"for (int64_t k = 0; k < {width}; ++k)"):
                        src(f"const int64_t i = {post_of_pre}[j * {width} + k];")
                        src("if (i < 0) break;")
                        src(f"{buf}[r * {m} + i] += {self._weight(q, rw, 'i', 'j', f'j * {width} + k')};")
                else:
                    src(f"for (int64_t i = 0; i < {m}; ++i) {buf}[r * {m} + i] += {self._weight(q, rw, 'i', 'j')};")

    # --- learning ---------------------------------------------------------------------------------------
    def _learn(self, src: _Source, index: int, name: str, size: Dict[str, int]) -> None:
        sim, net = self.sim, self.sim.network
        q = net.projections[name]
        rule = sim.rules[name]
        m, n = size[q.post], size[q.pre]
        T = rule.t_epoch
        x, y = self._slot("x", name), self._slot("y", name)
        tx, ty = self._slot("tx", name), self._slot("ty", name)
        syn = {v: self.live[(name, v)] for v in sim.syn[name]}
        params = {p: self._slot("param", name, p) for p in sim.params[name]}
        ctx = _Rule(self, name, rule, m, n, x, y, tx, ty, syn, params)
        src(f"// learning on {name!r}: record this step's spikes")
        src(f"const int64_t within_{index} = ts % {T} ? ts % {T} : {T};")
        src(f"(void)within_{index};")
        # the spike times of the neurons that spiked (the others keep theirs: 0 since the epoch began, or
        # an earlier step of it); a second spike in the epoch adds its impulse to the epoch-start trace
        for count, t_arr, trace_arr, pop, traces, width in ((n, tx, x, q.pre, PRE_TRACES, 2),
                                                            (m, ty, y, q.post, POST_TRACES, 3)):
            lst, cnt = self.lists[pop]
            with src.block(f"for (int64_t e = 0; e < {cnt}; ++e)"):
                src(f"const int64_t r = {lst}[e] / {count}, k = {lst}[e] % {count}; (void)r;")
                if T > 1:
                    src(f"if ({t_arr}[{lst}[e]] > 0) {{")
                    for tr in traces:
                        if rule.impulse.get(tr, 0.0) != 0.0 and tr not in rule.driven:
                            src(f"    {trace_arr}[(r * {width} + {TRACE_INDEX[tr]}) * {count} + k] += "
                                f"{_lit(rule.impulse[tr])} * S(1);")
                    src("}")
                src(f"{t_arr}[{lst}[e]] = (int32_t)within_{index};")
        with src.block("for (int64_t r = 0; r < R; ++r)"):
            for tr, driver in rule.driven.items():
                signal = self._signal(q.post, driver, m)
                src(f"for (int64_t k = 0; k < {m}; ++k) {y}[(r * 3 + {TRACE_INDEX[tr]}) * {m} + k] = {signal};")
        with src.block(f"if (ts % {T} == 0)"):
            src("// the epoch's end: every target from the values before it, then the traces roll")
            src(f"const bool u_on = ((ts / {T}) % {2 ** rule.u_exponent}) == 0;")
            src("(void)u_on;")
            ctx.end_traces(src)
            if T == 1:
                # every product reads the traces at the epoch's end: roll them first, read them as they are
                ctx.roll(src, self.lists[q.pre], self.lists[q.post])
                ctx.update(src, index)
                ctx.clear_times(src, self.lists[q.pre], self.lists[q.post])
            else:
                ctx.update(src, index)
                ctx.roll(src, self.lists[q.pre], self.lists[q.post])

    def _signal(self, post: str, driver: str, m: int) -> str:
        if driver == "third_factor":
            return f"({self.p_factor[post]} ? {self.p_factor[post]}[s * R * {m} + r * {m} + k] : S(0))"
        return f"{self.p_state[post][driver]}[r * {m} + k]"

    # --- running ---------------------------------------------------------------------------------------
    def run(self, steps: int, per_step: Mapping[str, torch.Tensor], held: Mapping[str, torch.Tensor],
            tf_seq: Mapping[str, torch.Tensor], tf_held: Mapping[str, torch.Tensor], recorder: "Recorder",
            progress: bool = False) -> None:
        """``steps`` steps of ``Simulator.run`` (inputs as it sorted them), in chunks between records."""
        sim, net = self.sim, self.sim.network
        unknown = (set(tf_seq) | set(tf_held)) - set(net.populations)
        if unknown:
            raise KeyError(f"unknown population(s) {sorted(unknown)}; have {sorted(net.populations)}")
        every = recorder.every
        counted = {p for p in map(count_monitor, recorder.monitors) if p is not None}
        bar = tqdm(total=steps, disable=not progress, desc="simulating", unit="step")
        k = 0
        while k < steps:
            # up to the next record; without monitors, the whole run at once
            size = min(every - k % every, steps - k) if recorder.monitors else steps - k
            inputs = self._inputs(k, size, per_step, held)
            factors = {}
            for post in self.p_factor:
                if post in tf_seq:
                    v = tf_seq[post][k:k + size]
                elif post in tf_held:
                    v = torch.as_tensor(tf_held[post], dtype=sim.dtype)[None]
                elif sim.learning:
                    raise ValueError(f"a rule on population {post!r} has a trace driven by 'third_factor': give "
                                     f"third_factors={{{post!r}: ...}} to run")
                else:
                    continue
                factors[post] = v.to(sim.dtype).expand(size, sim.replicas, net.populations[post].n).contiguous()
            counts = {p: torch.zeros_like(sim.spikes[p]) for p in counted}
            ptrs, keep = self._pointers(inputs, factors, counts)
            clamp = (ctypes.c_int64 * max(len(sim.rules), 1))(*[int(r in sim._unclipped) for r in sim.rules])
            # compact synapse arrays pay for their gathering and scattering over a few steps
            self._fn(ptrs, size, sim.time_step, int(sim.learning), clamp, int(size >= COMPACT_STEPS))
            del keep
            if sim.learning:
                sim._unclipped -= {r for r, rule in sim.rules.items()
                                   if (sim.time_step + size) // rule.t_epoch > sim.time_step // rule.t_epoch}
            sim.time_step += size
            k += size
            if sim._tied and sim.learning:  # the loop reads tied weights from their sources: refresh the copies
                sim._refresh_ties({p.tie.source for p in sim._tied})
            if (k % every == 0) and recorder.monitors:
                recorder.record(counts)
            bar.update(size)
        bar.close()

    def _inputs(self, k: int, size: int, per_step, held) -> Dict[str, torch.Tensor]:
        """Each input population's spikes for steps ``k .. k + size - 1``, ``(size, R, N)``."""
        sim, net = self.sim, self.sim.network
        out = {}
        for name, v in per_step.items():
            n = net.populations[name].n
            out[name] = v[k:k + size].to(sim.dtype).expand(size, sim.replicas, n).contiguous()
        # the encoders' draws step by step, populations in the engine's order: the same random numbers
        drawn: Dict[str, List[torch.Tensor]] = {name: [] for name in held}
        for j in range(size):
            for pop in self.pops:
                if pop.name in held:
                    drawn[pop.name].append(pop.encoder.step(held[pop.name].contiguous(), k + j, sim.dt, sim.generator))
        out.update({name: torch.stack(v).to(sim.dtype) for name, v in drawn.items()})
        return out


class _Rule:
    """Code for one plastic projection's learning epoch."""

    def __init__(self, loop: NativeLoop, name, rule, m, n, x, y, tx, ty, syn, params) -> None:
        self.loop, self.name, self.rule = loop, name, rule
        self.m, self.n, self.x, self.y, self.tx, self.ty, self.syn, self.params = m, n, x, y, tx, ty, syn, params
        self.T = rule.t_epoch
        self.shared = loop.sim.syn[name]["w"].shape[0] == 1
        self.powers = {tr: [rule.decay[tr] ** k for k in range(self.T + 1)] for tr in rule.decay}
        self.q = loop.sim.network.projections[name]

    def _pw(self, tr: str, idx: str) -> str:
        return f"pw_{tr}[{idx}]"

    def end_traces(self, src: _Source) -> None:
        """Tables of powers and each trace at the epoch's end (for the roll and ``t_epoch = 1``)."""
        T = self.T
        for tr, table in self.powers.items():
            # static: GCC 12.2 at -O2 miscompiles a variable index into a local const table (see FLAGS)
            src(f"static const S pw_{tr}[{T + 1}] = {{{', '.join(_lit(v) for v in table)}}};")
            src(f"(void)pw_{tr};")

    def _at_end(self, tr: str, start: str, t_spk: str) -> str:
        """``CompiledRule.at_end`` of trace ``tr`` from its start value and last spike time."""
        T, imp = self.T, self.rule.impulse[tr]
        value = f"({start} * {self._pw(tr, str(T))})"
        if imp == 0.0:
            return value
        hit = f"({t_spk} > 0 ? S(1) : S(0))"
        if T == 1:
            return f"({value} + {_lit(imp)} * {hit})"
        return f"({value} + ({_lit(imp)} * {self._pw(tr, f'{T} - {t_spk}')}) * {hit})"

    def _history(self, tr: str, start: str, t_spk: str, s: str) -> str:
        """``_history``: trace ``tr`` at within-epoch step ``s``."""
        imp = self.rule.impulse[tr]
        value = f"({start} * {self._pw(tr, s)})"
        if imp == 0.0:
            return value
        hit = f"(({t_spk} > 0 && {t_spk} <= {s}) ? S(1) : S(0))"
        return f"({value} + ({_lit(imp)} * {self._pw(tr, f'({s} - {t_spk} > 0 ? {s} - {t_spk} : 0)')}) * {hit})"

    def trace(self, tr: str, dep: str) -> str:
        m, n = self.m, self.n
        if tr in PRE_TRACES:
            start, t_spk = f"{self.x}[(r * 2 + {TRACE_INDEX[tr]}) * {n} + j]", f"{self.tx}[r * {n} + j]"
        else:
            start, t_spk = f"{self.y}[(r * 3 + {TRACE_INDEX[tr]}) * {m} + i]", f"{self.ty}[r * {m} + i]"
        if tr in self.rule.driven or self.T == 1:
            return start  # driven: the signal recorded this step; one-step epochs: rolled before the products
        if dep == "u":
            return self._at_end(tr, start, t_spk)
        s = f"{self.tx}[r * {n} + j]" if dep == "x0" else f"{self.ty}[r * {m} + i]"
        return self._history(tr, start, t_spk, s)

    def expr(self, e: Expr, dep: str) -> Tuple[Optional[float], str]:
        """``(value, code)``: a number known now (folded in double, as Python would) or C++ code."""
        if isinstance(e, Const):
            return e.value, _lit(e.value)
        if isinstance(e, Param):
            return None, f"{self.params[e.name]}[r]"
        if isinstance(e, Var):
            if e.name == "x0":
                return None, f"({self.tx}[r * {self.n} + j] > 0 ? S(1) : S(0))"
            if e.name == "y0":
                return None, f"({self.ty}[r * {self.m} + i] > 0 ? S(1) : S(0))"
            if e.name == "u":
                return None, "(u_on ? S(1) : S(0))"
            if e.name in TRACE_INDEX:
                return None, self.trace(e.name, dep)
            return None, f"old_{e.name}"
        assert isinstance(e, Op)
        args = [self.expr(a, dep) for a in e.args]
        values = [v for v, _ in args]
        if all(v is not None for v in values):
            folded = _fold(e.name, values, e.attrs)
            if folded is not None:
                return folded, _lit(folded)
        a = [c for _, c in args]
        name, at = e.name, e.attrs
        code = {
            "add": lambda: f"({a[0]} + {a[1]})", "sub": lambda: f"({a[0]} - {a[1]})",
            "mul": lambda: f"({a[0]} * {a[1]})", "div": lambda: f"({a[0]} / {a[1]})", "neg": lambda: f"(-{a[0]})",
            "abs": lambda: f"std::fabs({a[0]})", "sign": lambda: f"signv({a[0]})", "exp": lambda: f"std::exp({a[0]})",
            "pow": lambda: f"std::pow({a[0]}, {_lit(at[0])})",
            "clamp": lambda: f"clampv({a[0]}, {_lit(at[0])}, {_lit(at[1])})",
            "maximum": lambda: f"std::fmax({a[0]}, {a[1]})", "minimum": lambda: f"std::fmin({a[0]}, {a[1]})",
        }[name]
        return None, code()

    def term(self, term, dep_code: str) -> str:
        """``(dependency * coef) * f1 * f2 ...``, multiplied left to right as the engine does."""
        value = f"({dep_code} * {_lit(term.coef)})"
        for f in term.factors:
            value = f"({value} * {self.expr(f, term.dependency)[1]})"
        return value

    def update(self, src: _Source, index: int) -> None:
        """Visit the synapses an epoch may change, once each: rows of posts that spiked (``y0``
        products), columns of pres that spiked (``x0``), every synapse when a ``u`` product is on."""
        rule, m, n = self.rule, self.m, self.n
        terms = rule.terms
        deps = {t.dependency for ts in terms.values() for t in ts}
        masked = self.name in self.loop.p_tab
        src("bool all_syn = false;")
        if "u" in deps:
            src("all_syn = u_on;")
        # marks of the rows and columns to visit: scratch of this call (a plain stack of the function: no
        # statics, so simulators may run the same library from several threads)
        # (marks start and end all 0: only the marked entries are cleared after)
        self.loop._scratch.append(f"std::vector<char> row_{index}({m}), col_{index}({n});")
        self.loop._scratch.append(f"std::vector<int64_t> rows_{index}({m}), cols_{index}({n});")
        src(f"int64_t n_rows_{index} = 0, n_cols_{index} = 0;")
        for marks, out, count, width, lst_cnt, times in ((f"row_{index}", f"rows_{index}", f"n_rows_{index}", m,
                                                          self.loop.lists[self.q.post], self.ty),
                                                         (f"col_{index}", f"cols_{index}", f"n_cols_{index}", n,
                                                          self.loop.lists[self.q.pre], self.tx)):
            add = f"if (!{marks}[k]) {{ {marks}[k] = 1; {out}[{count}++] = k; }}"
            if self.T == 1:  # the neurons that spiked in the epoch are this step's
                lst, cnt = lst_cnt
                src(f"for (int64_t e = 0; e < {cnt}; ++e) {{ const int64_t k = {lst}[e] % {width}; {add} }}")
            else:
                src(f"for (int64_t r = 0; r < R; ++r) for (int64_t k = 0; k < {width}; ++k) "
                    f"if ({times}[r * {width} + k] > 0) {add}")
        visit = self._visit_code(index)
        post_of_pre, pre_of_post, slot_of_post = self.loop.p_tab.get(self.name, (None, None, None))
        tables = self.loop._tables.get(self.name)
        with src.block("if (all_syn)"):
            with src.block(f"for (int64_t i = 0; i < {m}; ++i)"):
                self._row(src, visit, masked, pre_of_post, slot_of_post, tables)
        with src.block("else"):
            if "y0" in deps:
                with src.block(f"for (int64_t e = 0; e < n_rows_{index}; ++e)"):
                    src(f"const int64_t i = rows_{index}[e];")
                    self._row(src, visit, masked, pre_of_post, slot_of_post, tables)
            if "x0" in deps:
                with src.block(f"for (int64_t e = 0; e < n_cols_{index}; ++e)"):
                    src(f"const int64_t j = cols_{index}[e];")
                    skip = f"if (row_{index}[i]) continue;" if "y0" in deps else ""
                    if masked:
                        width = tables[0].shape[1]
                        with src.block(f"for (int64_t kk = 0; kk < {width}; ++kk)"):
                            src(f"const int64_t i = {post_of_pre}[j * {width} + kk];")
                            src("if (i < 0) break;")
                            if skip:
                                src(skip)
                            src(f"const int64_t k = j * {width} + kk; (void)k;")
                            src(visit)
                    else:
                        with src.block(f"for (int64_t i = 0; i < {m}; ++i)"):
                            if skip:
                                src(skip)
                            src("const int64_t k = 0; (void)k;")
                            src(visit)
        src(f"for (int64_t e = 0; e < n_rows_{index}; ++e) row_{index}[rows_{index}[e]] = 0;")
        src(f"for (int64_t e = 0; e < n_cols_{index}; ++e) col_{index}[cols_{index}[e]] = 0;")
        # the first epoch after weights were set clips every weight, as a dense update would
        with src.block(f"if (clip_all_{index})"):
            src(f"clip_all_{index} = 0;  // once: later epochs clip what they update")
            lo, hi = rule.w_min, rule.w_max
            w = self.syn["w"]
            groups = self.loop._groups(self.q)
            size = f"{groups * m * n}"
            if self.name in self.loop.compact:  # the live arrays: compact (padding holds zeros) or dense
                size = f"(compact ? {groups * n * self.loop._tables[self.name][0].shape[1]} : {groups * m * n})"
            src(f"for (int64_t q = 0; q < {size}; ++q) {w}[q] = clampv({w}[q], {_lit(lo)}, {_lit(hi)});")
            if "dd" in terms:
                d = self.syn["d"]
                src(f"for (int64_t q = 0; q < {size}; ++q) {d}[q] = {d}[q] < 0 ? S(0) : {d}[q];")
        self._emit_visit_function(index)

    def _row(self, src, visit, masked, pre_of_post, slot_of_post, tables) -> None:
        if masked:
            width = tables[1].shape[1]
            with src.block(f"for (int64_t kk = 0; kk < {width}; ++kk)"):
                src(f"const int64_t j = {pre_of_post}[i * {width} + kk];")
                src("if (j < 0) break;")
                src(f"const int64_t k = {slot_of_post}[i * {width} + kk]; (void)k;")
                src(visit)
        else:
            with src.block(f"for (int64_t j = 0; j < {self.n}; ++j)"):
                src("const int64_t k = 0; (void)k;")
                src(visit)

    def _visit_code(self, index: int) -> str:
        return f"VISIT_{index}(i, j, k);"

    def _emit_visit_function(self, index: int) -> None:
        """The body that updates synapse ``(i, j)``: a macro placed before the function."""
        rule, m, n = self.rule, self.m, self.n
        terms = rule.terms
        lines = []
        groups = "1" if self.shared else "R"
        lines.append(f"for (int64_t g = 0; g < {groups}; ++g) {{")
        lines.append(f"  const int64_t syn_at = {self.loop._at(self.name, 'g', 'i', 'j', 'k')};")
        for v in ("w", "t", "d"):
            if v in self.syn:
                lines.append(f"  const S old_{v} = {self.syn[v]}[syn_at];")
        for target in terms:
            lines.append(f"  S acc_{target} = 0; bool any_{target} = false;")
        replicas = "R" if self.shared else "g + 1"
        start = "0" if self.shared else "g"
        lines.append(f"  for (int64_t r = {start}; r < {replicas}; ++r) {{")
        for target, ts in terms.items():
            for t in ts:
                dep = {"x0": f"{self.tx}[r * {n} + j] > 0", "y0": f"{self.ty}[r * {m} + i] > 0", "u": "u_on"}[t.dependency]
                lines.append(f"    if ({dep}) {{ acc_{target} = any_{target} ? acc_{target} + {self.term(t, 'S(1)')}"
                             f" : {self.term(t, 'S(1)')}; any_{target} = true; }}")
        lines.append("  }")
        for target in terms:
            v = target[1:]
            lines.append(f"  if (any_{target}) {self.syn[v]}[syn_at] = old_{v} + acc_{target};")
        lo, hi = rule.w_min, rule.w_max
        lines.append(f"  {self.syn['w']}[syn_at] = clampv({self.syn['w']}[syn_at], {_lit(lo)}, {_lit(hi)});")
        if "dd" in terms:
            lines.append(f"  if ({self.syn['d']}[syn_at] < 0) {self.syn['d']}[syn_at] = S(0);")
        lines.append("}")
        self.loop._macros.append(f"#define VISIT_{index}(i, j, k) do {{ \\\n" + " \\\n".join(lines) + " \\\n} while (0)")

    def clear_times(self, src: _Source, pre_list: Tuple[str, str], post_list: Tuple[str, str]) -> None:
        """One-step epochs: the spike times back to 0, only those of the neurons that spiked were set."""
        for (lst, cnt), t_arr in ((pre_list, self.tx), (post_list, self.ty)):
            src(f"for (int64_t e = 0; e < {cnt}; ++e) {t_arr}[{lst}[e]] = 0;")

    def roll(self, src: _Source, pre_list: Tuple[str, str], post_list: Tuple[str, str]) -> None:
        """Traces to their epoch-end values. With one-step epochs every trace decays and the neurons that
        spiked add their impulse (``start * a + impulse * hit`` of ``at_end``, whose ``+ 0`` elsewhere changes
        nothing; spike times are cleared by :meth:`clear_times`); else every spike time back to 0."""
        rule, m, n = self.rule, self.m, self.n
        if self.T == 1:
            for side, (lst, cnt), count, arr, t_arr, traces, width in (
                    ("x", pre_list, n, self.x, self.tx, PRE_TRACES, 2), ("y", post_list, m, self.y, self.ty, POST_TRACES, 3)):
                rolled = [tr for tr in traces if tr in rule.decay and tr not in rule.driven]
                with src.block("for (int64_t r = 0; r < R; ++r)"):
                    for tr in rolled:
                        at = f"{arr}[(r * {width} + {TRACE_INDEX[tr]}) * {count} + k]"
                        src(f"for (int64_t k = 0; k < {count}; ++k) {at} = {at} * {self._pw(tr, '1')};")
                with src.block(f"for (int64_t e = 0; e < {cnt}; ++e)"):
                    src(f"const int64_t r = {lst}[e] / {count}, k = {lst}[e] % {count}; (void)r; (void)k;")
                    for tr in rolled:
                        if rule.impulse[tr] != 0.0:
                            at = f"{arr}[(r * {width} + {TRACE_INDEX[tr]}) * {count} + k]"
                            src(f"{at} = {at} + {_lit(rule.impulse[tr])} * S(1);")
            return
        with src.block("for (int64_t r = 0; r < R; ++r)"):
            for tr in PRE_TRACES:
                if tr in rule.decay:
                    at = f"{self.x}[(r * 2 + {TRACE_INDEX[tr]}) * {n} + j]"
                    src(f"for (int64_t j = 0; j < {n}; ++j) {at} = {self._at_end(tr, at, f'{self.tx}[r * {n} + j]')};")
            for tr in POST_TRACES:
                if tr in rule.decay and tr not in rule.driven:
                    at = f"{self.y}[(r * 3 + {TRACE_INDEX[tr]}) * {m} + i]"
                    src(f"for (int64_t i = 0; i < {m}; ++i) {at} = {self._at_end(tr, at, f'{self.ty}[r * {m} + i]')};")
        src(f"std::memset({self.tx}, 0, sizeof(int32_t) * R * {n});")
        src(f"std::memset({self.ty}, 0, sizeof(int32_t) * R * {m});")


def _sum_code(parts: List[str]) -> str:
    """The engine's sum of buffers: the first, then each next added."""
    if not parts:
        return "S(0)"
    code = parts[0]
    for p in parts[1:]:
        code = f"({code} + {p})"
    return code


def _fold(name: str, v: List[float], attrs) -> Optional[float]:
    try:
        return {
            "add": lambda: v[0] + v[1], "sub": lambda: v[0] - v[1], "mul": lambda: v[0] * v[1],
            "div": lambda: v[0] / v[1], "neg": lambda: -v[0], "abs": lambda: abs(v[0]),
            "sign": lambda: float((v[0] > 0) - (v[0] < 0)), "exp": lambda: math.exp(v[0]),
            "pow": lambda: v[0] ** attrs[0], "clamp": lambda: min(max(v[0], attrs[0]), attrs[1]),
            "maximum": lambda: max(v[0], v[1]), "minimum": lambda: min(v[0], v[1]),
        }[name]()
    except (ArithmeticError, ValueError):
        return None  # let the loop compute it as the engine would (inf, nan)


def _mixing(e: Expr) -> Optional[str]:
    if isinstance(e, Op):
        if e.name in MIXING_OPS:
            return e.name
        for a in e.args:
            found = _mixing(a)
            if found:
                return found
    return None



def _own(d: Dict[str, torch.Tensor], key: str, dtype: torch.dtype) -> torch.Tensor:
    """``d[key]`` as a contiguous tensor of ``dtype`` that ``d`` holds (replaced if it was not one)."""
    t = d[key]
    if t.dtype != dtype or not t.is_contiguous() or t.device.type != "cpu":
        t = t.to(dtype=dtype, device="cpu").contiguous()
        d[key] = t
    return t


def _tables(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded synapse lists of a mask ``(M, N)``: posts of each pre ``(N, Wp)`` (ascending, -1 after the
    last), pres of each post ``(M, Wq)``, and for each of the latter its place ``j * Wp + s`` in the first
    (the compact, pre-major layout of the synapses)."""
    from neuro.plasticity import _padded

    mask = torch.as_tensor(mask, device="cpu").bool()
    post_of_pre, pre_of_post = _padded(mask.T.contiguous()).contiguous(), _padded(mask).contiguous()
    width = post_of_pre.shape[1]
    slot = torch.full((mask.shape[0], mask.shape[1]), -1, dtype=torch.long)
    j, s_ = (post_of_pre >= 0).nonzero(as_tuple=True)
    slot[post_of_pre[j, s_], j] = j * width + s_
    valid = pre_of_post >= 0
    slot_of_post = torch.full_like(pre_of_post, -1)
    rows = torch.arange(mask.shape[0])[:, None].expand_as(pre_of_post)
    slot_of_post[valid] = slot[rows[valid], pre_of_post[valid]]
    return post_of_pre, pre_of_post, slot_of_post.contiguous()


#: How the generated source is compiled. ``-ffp-contract=off``: no fused multiply-adds change the rounding.
#: ``-fno-thread-jumps``: GCC 12.2 (Debian 12's compiler) at -O2 and above threads a jump on a value range
#: wrongly derived from an index into a local table, and the ``u`` products of epochs longer than one step
#: read the wrong power (``test_compiler_keeps_table_indices`` holds the smallest reproducer).
FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fno-thread-jumps")

_LOADED: Dict[str, Callable] = {}


def _load(source: str) -> Callable:
    """Compile ``source`` (cached by its hash) and return its ``run`` function."""
    digest = hashlib.sha256(" ".join(FLAGS + (source,)).encode()).hexdigest()[:20]
    if digest in _LOADED:
        return _LOADED[digest]
    cxx = compiler()
    if cxx is None:
        raise NativeError("native=True needs a C++ compiler (c++ or g++ on the PATH, or $CXX); none found")
    cache = Path(os.environ.get("NEURO_NATIVE_CACHE", Path.home() / ".cache" / "neuro" / "native"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: a private folder under the temporary directory
        cache = Path(tempfile.gettempdir()) / f"neuro-native-{os.getuid()}"
        cache.mkdir(mode=0o700, exist_ok=True)
    lib = cache / f"loop_{digest}.so"
    if not lib.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            cpp = Path(tmp) / "loop.cpp"
            cpp.write_text(source)
            out = Path(tmp) / "loop.so"
            done = subprocess.run([cxx, *FLAGS, "-shared", "-fPIC", "-o", str(out), str(cpp)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise NativeError(f"compiling the native loop failed:\n{done.stderr[-2000:]}")
            os.replace(out, lib)  # atomic: a concurrent process sees the whole library or none
    fn = ctypes.CDLL(str(lib)).run
    fn.restype = None
    fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                   ctypes.POINTER(ctypes.c_int64), ctypes.c_int64]
    _LOADED[digest] = fn
    return fn
