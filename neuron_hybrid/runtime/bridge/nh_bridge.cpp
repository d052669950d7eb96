// neuron-hybrid bridge: loads TorchScript learned currents and evaluates them for NEURON.
//
// Engines
//   torchscript : libtorch forward of the module's rates/current/conductance methods (reference).
//   compiled    : a straight-line "tape" of scalar ops (written by neuron_hybrid.export from the
//                 frozen TorchScript graph) run in plain C++, with forward-mode di/dv.
//   table       : rates(v) tabulated on a fine voltage grid from the TorchScript reference and
//                 linearly interpolated; current from the tape (or TorchScript if there is none).
// Fast engines are verified against the reference when a model is loaded; the errors are kept.
#include "nh_bridge.h"

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <dlfcn.h>
#if defined(__AVX2__) && defined(NH_USE_LIBMVEC)
#include <immintrin.h>
// glibc's vector math library (libmvec, glibc >= 2.35): 4 doubles per call (AVX2)
extern "C" __m256d _ZGVdN4v_tanh(__m256d);
extern "C" __m256d _ZGVdN4v_exp(__m256d);
// (libmvec's 8-wide AVX-512 variant is not used: it can lower the core's clock and did not make
// benchmarks/mechanism_cost.py faster here)
#define NH_VEC4 1
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

thread_local std::string t_error;

int fail(const std::string& msg) {
    t_error = msg;
    return 1;
}

// ----------------------------------------------------------------------------------------------
// Tape interpreter
// ----------------------------------------------------------------------------------------------
enum Op {
    IN_V, IN_Z, CONST, GATHER, CONCAT, ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM,
    NEG, EXP, LOG, TANH, SIGMOID, RELU, SOFTPLUS, SQRT, POWC, CLAMP, ABS, SCALE,
    LINEAR, MATMUL, SUMG, PRODG, LAYERNORM, SIN, COS, EXPM1, LOG1P, RECIP,
    LT, GT, LE, GE, EQ, NE, WHERE, N_OPS
};

const char* kOpNames[N_OPS] = {
    "in_v", "in_z", "const", "gather", "concat", "add", "sub", "mul", "div", "pow", "maximum",
    "minimum", "neg", "exp", "log", "tanh", "sigmoid", "relu", "softplus", "sqrt", "powc",
    "clamp", "abs", "scale", "linear", "matmul", "sumg", "prodg", "layernorm", "sin", "cos",
    "expm1", "log1p", "recip", "lt", "gt", "le", "ge", "eq", "ne", "where"};

struct Instr {
    int op = 0;
    int out = 0;
    std::vector<int> in;
    std::vector<int> ip;
    std::vector<double> dp;
    std::vector<double> wt;  // LINEAR: weights transposed to [Kin][M] for vectorised accumulation
};

struct Tape {
    std::vector<int> size, offset;
    std::vector<char> is_const, need_dot;
    std::vector<double> const_pool;  // values of CONST slots
    std::vector<Instr> code;         // CONST instructions removed
    std::vector<int> outputs;
    int total = 0;
    int max_size = 1;
    std::vector<double> zeros;
    // Scalar program: when every slot but the latents z is a single number (channel formulas such as
    // hh's), the tape runs from this flat form, with values and tangents always computed; the general
    // loop's per-slot bookkeeping cost several times the arithmetic (valgrind: 490 of 630
    // instructions per call for hh's K current).
    struct Arg { int off = 0; int is_const = 0; };  // is_const indexes {values, constants}
    struct SInstr { int op = 0, out = 0, nz = 0; Arg a, b, c; double p0 = 0, p1 = 0; };
    bool scalar = false;
    std::vector<SInstr> scode;
    std::vector<double> const_zeros;  // tangents of the constants (as many zeros as const_pool)
};

bool scalar_op(int op) {
    return op == IN_V || op == IN_Z || op == GATHER || (op >= ADD && op <= MINIMUM) ||
           (op >= NEG && op <= SCALE && op != LINEAR) || (op >= SIN && op <= RECIP) || (op >= LT && op <= WHERE);
}

void build_scalar(Tape& t) {
    std::vector<Tape::SInstr> code;
    auto arg = [&](int s, int k) { return Tape::Arg{t.offset[s] + k, t.is_const[s] ? 1 : 0}; };
    for (const Instr& ins : t.code) {
        if (!scalar_op(ins.op) || (ins.op != IN_Z && t.size[ins.out] != 1)) return;
        Tape::SInstr si;
        si.op = ins.op;
        si.out = t.offset[ins.out];
        if (ins.op == IN_Z) si.nz = t.size[ins.out];
        if (ins.op == GATHER) {
            si.a = arg(ins.in[0], ins.ip[0]);
        } else {
            for (size_t j = 0; j < ins.in.size(); ++j) {
                if (t.size[ins.in[j]] != 1) return;
                (j == 0 ? si.a : j == 1 ? si.b : si.c) = arg(ins.in[j], 0);
            }
        }
        if (ins.dp.size() > 0) si.p0 = ins.dp[0];
        if (ins.dp.size() > 1) si.p1 = ins.dp[1];
        code.push_back(si);
    }
    t.scode = std::move(code);
    t.const_zeros.assign(std::max<size_t>(t.const_pool.size(), 1), 0.0);
    t.scalar = true;
}

Tape parse_tape(const std::string& text) {
    Tape t;
    std::istringstream in(text);
    std::string word;
    int version = 0, nslots = 0;
    in >> word >> version;
    if (word != "nh_tape" || version != 1) throw std::runtime_error("not an nh_tape v1");
    in >> word >> nslots;
    if (word != "slots" || nslots <= 0) throw std::runtime_error("bad slot count");
    t.size.resize(nslots);
    in >> word;
    if (word != "sizes") throw std::runtime_error("expected sizes");
    for (int s = 0; s < nslots; ++s) in >> t.size[s];
    int nout = 0;
    in >> word >> nout;
    if (word != "outputs") throw std::runtime_error("expected outputs");
    t.outputs.resize(nout);
    for (int k = 0; k < nout; ++k) in >> t.outputs[k];
    std::vector<Instr> all;
    while (in >> word) {
        if (word != "instr") throw std::runtime_error("expected instr, got " + word);
        Instr ins;
        std::string opname;
        int n = 0;
        in >> opname >> ins.out;
        ins.op = -1;
        for (int o = 0; o < N_OPS; ++o)
            if (opname == kOpNames[o]) ins.op = o;
        if (ins.op < 0) throw std::runtime_error("unknown tape op " + opname);
        in >> n;
        ins.in.resize(n);
        for (auto& x : ins.in) in >> x;
        in >> n;
        ins.ip.resize(n);
        for (auto& x : ins.ip) in >> x;
        in >> n;
        ins.dp.resize(n);
        for (auto& x : ins.dp) {
            std::string tok;
            in >> tok;
            x = std::strtod(tok.c_str(), nullptr);  // accepts inf/nan spelled by Python
        }
        if (!in) throw std::runtime_error("truncated tape");
        all.push_back(std::move(ins));
    }
    // Layout: constants in the pool, everything else in the scratch buffer.
    t.is_const.assign(nslots, 0);
    t.need_dot.assign(nslots, 0);
    t.offset.assign(nslots, 0);
    int pool = 0;
    for (auto& ins : all)
        if (ins.op == CONST) {
            if ((int)ins.dp.size() != t.size[ins.out]) throw std::runtime_error("const size mismatch");
            t.is_const[ins.out] = 1;
            t.offset[ins.out] = pool;
            pool += t.size[ins.out];
            t.const_pool.insert(t.const_pool.end(), ins.dp.begin(), ins.dp.end());
        }
    for (int s = 0; s < nslots; ++s) {
        if (t.size[s] < 0) throw std::runtime_error("negative slot size");
        t.max_size = std::max(t.max_size, t.size[s]);
        if (!t.is_const[s]) {
            t.offset[s] = t.total;
            t.total += t.size[s];
        }
    }
    for (auto& ins : all) {
        if (ins.op == CONST) continue;
        if (ins.out < 0 || ins.out >= nslots) throw std::runtime_error("slot out of range");
        bool nd = ins.op == IN_V;
        for (int s : ins.in) {
            if (s < 0 || s >= nslots) throw std::runtime_error("slot out of range");
            nd = nd || t.need_dot[s];
        }
        t.need_dot[ins.out] = nd;
        if (ins.op == LINEAR) {
            const int Kin = ins.ip[1], M = ins.ip[2];
            if ((int)ins.dp.size() < M * Kin + (ins.ip[3] ? M : 0)) throw std::runtime_error("linear weights truncated");
            ins.wt.resize((size_t)M * Kin);
            for (int m = 0; m < M; ++m)
                for (int k = 0; k < Kin; ++k) ins.wt[(size_t)k * M + m] = ins.dp[(size_t)m * Kin + k];
        }
        t.code.push_back(std::move(ins));
    }
    for (int s : t.outputs)
        if (s < 0 || s >= nslots) throw std::runtime_error("output slot out of range");
    t.zeros.assign(t.max_size, 0.0);
    build_scalar(t);
    return t;
}

struct TapeRun {
    const Tape& t;
    double* val;
    double* dot;
    bool with_dot;
    const double* V(int s) const { return t.is_const[s] ? t.const_pool.data() + t.offset[s] : val + t.offset[s]; }
    const double* D(int s) const { return (with_dot && t.need_dot[s]) ? dot + t.offset[s] : t.zeros.data(); }
};

// y = b + W x and dy = W dx for one row, with the M outputs held in registers (M known at compile time).
template <int M>
inline void linear_row_fixed(const double* __restrict Wt, const double* b, int Kin, const double* x, const double* dx,
                             double* __restrict y, double* __restrict dy, bool nd) {
    double acc[M], dacc[M];
    for (int m = 0; m < M; ++m) { acc[m] = b ? b[m] : 0.0; dacc[m] = 0.0; }
    if (nd) {  // value and tangent in one pass over the weights
        for (int k = 0; k < Kin; ++k) {
            const double* __restrict w = Wt + (size_t)k * M;
            const double xk = x[k], dxk = dx[k];
            for (int m = 0; m < M; ++m) {
                acc[m] += w[m] * xk;
                dacc[m] += w[m] * dxk;
            }
        }
    } else {
        for (int k = 0; k < Kin; ++k) {
            const double* __restrict w = Wt + (size_t)k * M;
            const double xk = x[k];
            for (int m = 0; m < M; ++m) acc[m] += w[m] * xk;
        }
    }
    for (int m = 0; m < M; ++m) y[m] = acc[m];
    if (nd) for (int m = 0; m < M; ++m) dy[m] = dacc[m];
}

void linear_row(const double* Wt, const double* b, int Kin, int M, const double* x, const double* dx, double* y,
                double* dy, bool nd) {
    switch (M) {
        case 1: return linear_row_fixed<1>(Wt, b, Kin, x, dx, y, dy, nd);
        case 2: return linear_row_fixed<2>(Wt, b, Kin, x, dx, y, dy, nd);
        case 4: return linear_row_fixed<4>(Wt, b, Kin, x, dx, y, dy, nd);
        case 8: return linear_row_fixed<8>(Wt, b, Kin, x, dx, y, dy, nd);
        case 16: return linear_row_fixed<16>(Wt, b, Kin, x, dx, y, dy, nd);
        case 32: return linear_row_fixed<32>(Wt, b, Kin, x, dx, y, dy, nd);
        case 64: return linear_row_fixed<64>(Wt, b, Kin, x, dx, y, dy, nd);
        default: break;
    }
    for (int m = 0; m < M; ++m) { y[m] = b ? b[m] : 0.0; if (nd) dy[m] = 0.0; }
    for (int k = 0; k < Kin; ++k) {
        const double* w = Wt + (size_t)k * M;
        for (int m = 0; m < M; ++m) y[m] += w[m] * x[k];
        if (nd && dx[k] != 0.0)
            for (int m = 0; m < M; ++m) dy[m] += w[m] * dx[k];
    }
}

inline double sigm(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }

// y = op(x) and d = dy/dx for the elementwise unary ops (dp: the op's parameters).
__attribute__((always_inline)) inline void unary(int op, const double* dp, double x, double& yk, double& d) {
    switch (op) {
        case NEG: yk = -x; d = -1.0; break;
        case EXP: yk = std::exp(x); d = yk; break;
        case LOG: yk = std::log(x); d = 1.0 / x; break;
        case TANH: yk = std::tanh(x); d = 1.0 - yk * yk; break;
        case SIGMOID: yk = sigm(x); d = yk * (1.0 - yk); break;
        case RELU: yk = x > 0 ? x : 0.0; d = x > 0 ? 1.0 : 0.0; break;
        case SOFTPLUS: {
            const double beta = dp[0], thr = dp[1];
            if (x * beta > thr) { yk = x; d = 1.0; }
            else { yk = std::log1p(std::exp(beta * x)) / beta; d = sigm(beta * x); }
            break;
        }
        case SQRT: yk = std::sqrt(x); d = 0.5 / yk; break;
        case POWC: {
            const double p = dp[0];
            if (p == 2.0) { yk = x * x; d = 2.0 * x; }
            else if (p == 3.0) { yk = x * x * x; d = 3.0 * x * x; }
            else if (p == 4.0) { const double x2 = x * x; yk = x2 * x2; d = 4.0 * x2 * x; }
            else if (p == 1.0) { yk = x; d = 1.0; }
            else { yk = std::pow(x, p); d = p * std::pow(x, p - 1.0); }
            break;
        }
        case CLAMP: {
            const double lo = dp[0], hi = dp[1];
            yk = x < lo ? lo : (x > hi ? hi : x);
            d = (x < lo || x > hi) ? 0.0 : 1.0;
            break;
        }
        case ABS: yk = std::fabs(x); d = x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); break;  // torch: sign(0) = 0
        case SCALE: yk = dp[0] * x + dp[1]; d = dp[0]; break;
        case SIN: yk = std::sin(x); d = std::cos(x); break;
        case COS: yk = std::cos(x); d = -std::sin(x); break;
        case EXPM1: yk = std::expm1(x); d = yk + 1.0; break;
        case LOG1P: yk = std::log1p(x); d = 1.0 / (1.0 + x); break;
        default: yk = 1.0 / x; d = -yk * yk; break;  // RECIP
    }
}

// y = op(a, b) and its tangent dy for the elementwise binary ops.
__attribute__((always_inline)) inline void binary(int op, double a, double b, double da, double db, double& yk,
                                                  double& dk) {
    dk = 0.0;
    switch (op) {
        case ADD: yk = a + b; dk = da + db; break;
        case SUB: yk = a - b; dk = da - db; break;
        case MUL: yk = a * b; dk = da * b + a * db; break;
        case DIV: yk = a / b; dk = (da - yk * db) / b; break;
        case POW:
            yk = std::pow(a, b);
            dk = (da != 0.0 ? b * std::pow(a, b - 1.0) * da : 0.0) + (db != 0.0 ? yk * std::log(a) * db : 0.0);
            break;
        // at a tie torch splits the gradient evenly
        case MAXIMUM: yk = a >= b ? a : b; dk = a > b ? da : (a < b ? db : 0.5 * (da + db)); break;
        default: yk = a <= b ? a : b; dk = a < b ? da : (a > b ? db : 0.5 * (da + db)); break;  // MINIMUM
    }
}

inline bool compare(int op, double a, double b) {
    switch (op) {
        case LT: return a < b;
        case GT: return a > b;
        case LE: return a <= b;
        case GE: return a >= b;
        case EQ: return a == b;
        default: return a != b;  // NE
    }
}

// one dispatch per instruction: each case calls the element function with a constant op, so its
// own switch folds away when inlined
#define NH_BINARY(OP) case OP: binary(OP, V(s.a), V(s.b), D(s.a), D(s.b), y, dy); break;
#define NH_COMPARE(OP) case OP: y = compare(OP, V(s.a), V(s.b)) ? 1.0 : 0.0; dy = 0.0; break;
#define NH_UNARY(OP)                                                                     \
    case OP: {                                                                           \
        const double p[2] = {s.p0, s.p1};                                                \
        double d;                                                                        \
        unary(OP, p, V(s.a), y, d);                                                      \
        const double da = D(s.a);                                                        \
        dy = da != 0.0 ? d * da : 0.0; /* as the general loop: v-independent slots */   \
        break;                                                                           \
    }

// The scalar program (Tape::scode): values at buf[off], tangents at buf[total + off].
void run_scalar(const Tape& t, double v, const double* z, double* val) {
    double* dot = val + t.total;
    // operands are looked up without branches: base[is_const][off]
    const double* const vbase[2] = {val, t.const_pool.data()};
    const double* const dbase[2] = {dot, t.const_zeros.data()};
    auto V = [&](const Tape::Arg& a) { return vbase[a.is_const][a.off]; };
    auto D = [&](const Tape::Arg& a) { return dbase[a.is_const][a.off]; };
#ifdef NH_VEC4
    _mm256_zeroupper();  // libm's scalar functions are SSE code: avoid AVX-SSE transition stalls
#endif
    for (const Tape::SInstr& s : t.scode) {
        double& y = val[s.out];
        double& dy = dot[s.out];
        switch (s.op) {
            case IN_V: y = v; dy = 1.0; break;
            case IN_Z:
                for (int k = 0; k < s.nz; ++k) { val[s.out + k] = z[k]; dot[s.out + k] = 0.0; }
                break;
            case GATHER: y = V(s.a); dy = D(s.a); break;
            NH_BINARY(ADD) NH_BINARY(SUB) NH_BINARY(MUL) NH_BINARY(DIV) NH_BINARY(POW) NH_BINARY(MAXIMUM)
            NH_BINARY(MINIMUM)
            NH_COMPARE(LT) NH_COMPARE(GT) NH_COMPARE(LE) NH_COMPARE(GE) NH_COMPARE(EQ) NH_COMPARE(NE)
            case WHERE:
                if (V(s.a) != 0.0) { y = V(s.b); dy = D(s.b); } else { y = V(s.c); dy = D(s.c); }
                break;
            NH_UNARY(NEG) NH_UNARY(EXP) NH_UNARY(LOG) NH_UNARY(TANH) NH_UNARY(SIGMOID) NH_UNARY(RELU)
            NH_UNARY(SOFTPLUS) NH_UNARY(SQRT) NH_UNARY(POWC) NH_UNARY(CLAMP) NH_UNARY(ABS) NH_UNARY(SCALE)
            NH_UNARY(SIN) NH_UNARY(COS) NH_UNARY(EXPM1) NH_UNARY(LOG1P)
            default: NH_UNARY(RECIP)
#undef NH_BINARY
#undef NH_COMPARE
#undef NH_UNARY
        }
    }
}

// Runs the tape for one voltage. Buffers are per thread.
void run_tape(const Tape& t, double v, const double* z, bool with_dot, std::vector<double>& buf) {
    if ((int)buf.size() < 2 * t.total) buf.resize(2 * t.total);
    if (t.scalar) return run_scalar(t, v, z, buf.data());
    TapeRun r{t, buf.data(), buf.data() + t.total, with_dot};
    for (const Instr& ins : t.code) {
        const int n = t.size[ins.out];
        double* y = r.val + t.offset[ins.out];
        const bool nd = with_dot && t.need_dot[ins.out];
        double* dy = r.dot + t.offset[ins.out];
        switch (ins.op) {
            case IN_V:
                y[0] = v;
                if (nd) dy[0] = 1.0;
                break;
            case IN_Z:
                for (int k = 0; k < n; ++k) y[k] = z[k];
                break;
            case GATHER: {
                const double* a = r.V(ins.in[0]);
                const double* da = r.D(ins.in[0]);
                for (int k = 0; k < n; ++k) y[k] = a[ins.ip[k]];
                if (nd) for (int k = 0; k < n; ++k) dy[k] = da[ins.ip[k]];
                break;
            }
            case CONCAT: {
                int pos = 0;
                for (int s : ins.in) {
                    const double* a = r.V(s);
                    const double* da = r.D(s);
                    for (int k = 0; k < t.size[s]; ++k) {
                        y[pos + k] = a[k];
                        if (nd) dy[pos + k] = da[k];
                    }
                    pos += t.size[s];
                }
                break;
            }
            case ADD: case SUB: case MUL: case DIV: case POW: case MAXIMUM: case MINIMUM: {
                const double* a = r.V(ins.in[0]);
                const double* b = r.V(ins.in[1]);
                const double* da = r.D(ins.in[0]);
                const double* db = r.D(ins.in[1]);
                for (int k = 0; k < n; ++k) {
                    double yk, dk;
                    binary(ins.op, a[k], b[k], da[k], db[k], yk, dk);
                    y[k] = yk;
                    if (nd) dy[k] = dk;
                }
                break;
            }
#ifdef NH_VEC4
            case TANH: case EXP: {
                const double* a = r.V(ins.in[0]);
                const double* da = r.D(ins.in[0]);
                int k = 0;
                for (; k + 4 <= n; k += 4) {
                    const __m256d x = _mm256_loadu_pd(a + k);
                    _mm256_storeu_pd(y + k, ins.op == TANH ? _ZGVdN4v_tanh(x) : _ZGVdN4v_exp(x));
                }
                _mm256_zeroupper();  // avoid AVX-SSE transition penalties in later scalar libm calls
                for (; k < n; ++k) y[k] = ins.op == TANH ? std::tanh(a[k]) : std::exp(a[k]);
                if (nd) {
                    if (ins.op == TANH)
                        for (int j = 0; j < n; ++j) dy[j] = (1.0 - y[j] * y[j]) * da[j];
                    else
                        for (int j = 0; j < n; ++j) dy[j] = y[j] * da[j];
                }
                break;
            }
            case NEG: case LOG: case SIGMOID: case RELU: case SOFTPLUS:
#else
            case NEG: case EXP: case LOG: case TANH: case SIGMOID: case RELU: case SOFTPLUS:
#endif
            case SQRT: case POWC: case CLAMP: case ABS: case SCALE: case SIN: case COS:
            case EXPM1: case LOG1P: case RECIP: {
                const double* a = r.V(ins.in[0]);
                const double* da = r.D(ins.in[0]);
#ifdef NH_VEC4
                _mm256_zeroupper();  // libm's scalar functions are SSE code: avoid AVX-SSE transition stalls
#endif
                for (int k = 0; k < n; ++k) {
                    double yk, d;  // d = dy/dx
                    unary(ins.op, ins.dp.data(), a[k], yk, d);
                    y[k] = yk;
                    if (nd) dy[k] = d * da[k];
                }
                break;
            }
            case LT: case GT: case LE: case GE: case EQ: case NE: {  // 0/1 masks, no derivative
                const double* a = r.V(ins.in[0]);
                const double* b = r.V(ins.in[1]);
                for (int k = 0; k < n; ++k) {
                    y[k] = compare(ins.op, a[k], b[k]) ? 1.0 : 0.0;
                    if (nd) dy[k] = 0.0;
                }
                break;
            }
            case WHERE: {
                const double* c = r.V(ins.in[0]);
                const double* a = r.V(ins.in[1]);
                const double* b = r.V(ins.in[2]);
                const double* da = r.D(ins.in[1]);
                const double* db = r.D(ins.in[2]);
                for (int k = 0; k < n; ++k) {
                    y[k] = c[k] != 0.0 ? a[k] : b[k];
                    if (nd) dy[k] = c[k] != 0.0 ? da[k] : db[k];
                }
                break;
            }
            case LINEAR: {  // x [R, Kin] -> [R, M]; dp = W (M x Kin, row-major) then b (M) if ip[3]
                const int R = ins.ip[0], Kin = ins.ip[1], M = ins.ip[2], has_b = ins.ip[3];
                const double* x = r.V(ins.in[0]);
                const double* dx = r.D(ins.in[0]);
                const double* Wt = ins.wt.data();
                const double* b = has_b ? ins.dp.data() + (size_t)M * Kin : nullptr;
                for (int i = 0; i < R; ++i)
                    linear_row(Wt, b, Kin, M, x + (size_t)i * Kin, dx + (size_t)i * Kin, y + (size_t)i * M,
                               dy + (size_t)i * M, nd);
                break;
            }
            case MATMUL: {  // a [R, Kc] @ b [Kc, C]
                const int R = ins.ip[0], Kc = ins.ip[1], C = ins.ip[2];
                const double* a = r.V(ins.in[0]);
                const double* b = r.V(ins.in[1]);
                const double* da = r.D(ins.in[0]);
                const double* db = r.D(ins.in[1]);
                for (int i = 0; i < R; ++i)
                    for (int c = 0; c < C; ++c) {
                        double acc = 0.0, dacc = 0.0;
                        for (int k = 0; k < Kc; ++k) {
                            acc += a[i * Kc + k] * b[k * C + c];
                            if (nd) dacc += da[i * Kc + k] * b[k * C + c] + a[i * Kc + k] * db[k * C + c];
                        }
                        y[i * C + c] = acc;
                        if (nd) dy[i * C + c] = dacc;
                    }
                break;
            }
            case SUMG: case PRODG: {  // out[ip[j]] (+|*)= in[j]
                const double* a = r.V(ins.in[0]);
                const double* da = r.D(ins.in[0]);
                const int m = t.size[ins.in[0]];
                const bool sum = ins.op == SUMG;
                for (int k = 0; k < n; ++k) { y[k] = sum ? 0.0 : 1.0; if (nd) dy[k] = 0.0; }
                for (int j = 0; j < m; ++j) y[ins.ip[j]] = sum ? y[ins.ip[j]] + a[j] : y[ins.ip[j]] * a[j];
                if (nd) {
                    if (sum) {
                        for (int j = 0; j < m; ++j) dy[ins.ip[j]] += da[j];
                    } else {  // product rule without division
                        for (int j = 0; j < m; ++j) {
                            if (da[j] == 0.0) continue;
                            double others = 1.0;
                            for (int l = 0; l < m; ++l)
                                if (l != j && ins.ip[l] == ins.ip[j]) others *= a[l];
                            dy[ins.ip[j]] += others * da[j];
                        }
                    }
                }
                break;
            }
            case LAYERNORM: {  // rows of C; dp = eps, then w (C), b (C) if ip[2]
                const int R = ins.ip[0], C = ins.ip[1], affine = ins.ip[2];
                const double eps = ins.dp[0];
                const double* x = r.V(ins.in[0]);
                const double* dx = r.D(ins.in[0]);
                for (int i = 0; i < R; ++i) {
                    const double* xi = x + (size_t)i * C;
                    double mu = 0, var = 0;
                    for (int c = 0; c < C; ++c) mu += xi[c];
                    mu /= C;
                    for (int c = 0; c < C; ++c) var += (xi[c] - mu) * (xi[c] - mu);
                    var /= C;
                    const double inv = 1.0 / std::sqrt(var + eps);
                    double mdx = 0, mxdx = 0;
                    if (nd) {
                        const double* dxi = dx + (size_t)i * C;
                        for (int c = 0; c < C; ++c) {
                            mdx += dxi[c];
                            mxdx += (xi[c] - mu) * inv * dxi[c];
                        }
                        mdx /= C;
                        mxdx /= C;
                    }
                    for (int c = 0; c < C; ++c) {
                        const double xh = (xi[c] - mu) * inv;
                        const double w = affine ? ins.dp[1 + c] : 1.0;
                        const double b = affine ? ins.dp[1 + C + c] : 0.0;
                        y[i * C + c] = xh * w + b;
                        if (nd) dy[i * C + c] = w * inv * (dx[i * C + c] - mdx - xh * mxdx);
                    }
                }
                break;
            }
            default:
                break;
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Models
// ----------------------------------------------------------------------------------------------
enum Engine { ENG_TORCH = 0, ENG_COMPILED = 1, ENG_TABLE = 2 };

// on_out_of_range modes (learned_current.OUT_OF_RANGE_MODES)
constexpr int kClampWarn = 0, kRaise = 1, kClampQuiet = 2;

struct Model {
    std::string path, name;
    int K = 0;
    int kind = 0;
    double vmin = -100, vmax = 60;
    std::atomic<int> raise{kClampWarn};  // kClampWarn, kRaise or kClampQuiet (out_of_range counts in every mode)
    std::atomic<long> out_of_range{0};
    std::atomic<int> warned{0};
    torch::jit::script::Module module;
    bool has_rates_tape = false, has_current_tape = false;
    Tape rates_tape, current_tape;
    int rates_engine = ENG_TORCH, current_engine = ENG_TORCH;
    std::string engine_name;
    double err[4] = {0, 0, 0, 0};
    // table: n points, row i = zinf[K] then tau[K]; table_view describes it (nh_table.h)
    std::vector<double> table;
    nhb_table_t table_view{nullptr, 0, 0, 0, 0, 0};  // view of `table` (set with it)
    bool table_exposed = false;                       // nhb_table() returns the view (engine "table", checked)
    std::mutex names_mutex;
    std::map<int, std::string> names;
};

std::mutex g_registry_mutex;
constexpr int kMaxModels = 4096;
std::atomic<Model*> g_models[kMaxModels];
std::atomic<int> g_n_models{0};

Model* get(int h) {
    if (h < 0 || h >= g_n_models.load()) return nullptr;
    return g_models[h].load();
}

std::string instance_name(Model* m, int instance) {
    std::lock_guard<std::mutex> lock(m->names_mutex);
    auto it = m->names.find(instance);
    if (it != m->names.end()) return it->second;
    return instance < 0 ? std::string("unknown instance") : "instance " + std::to_string(instance);
}

std::string where(Model* m, int instance) {
    return "learned current '" + m->name + "' (file " + m->path + ") at " + instance_name(m, instance);
}

torch::Tensor vec(const double* x, int64_t n) {
    return torch::from_blob(const_cast<double*>(x), {n}, torch::kFloat64).clone();
}

// TorchScript reference evaluations (batched).
void torch_rates(Model* m, const torch::Tensor& v, torch::Tensor& zinf, torch::Tensor& tau) {
    torch::NoGradGuard ng;
    auto out = m->module.get_method("rates")({v}).toTuple();
    zinf = out->elements()[0].toTensor().to(torch::kFloat64).contiguous();
    tau = out->elements()[1].toTensor().to(torch::kFloat64).contiguous();
}

// libtorch's autograd engine refuses to run while the calling thread holds Python's GIL, which is
// the case when NEURON is driven from Python. Release it around autograd calls; the Python C API is
// looked up at run time so that the bridge also works in nrniv without Python.
struct GilRelease {
    void* state = nullptr;
    GilRelease() {
        using CheckFn = int (*)();
        using SaveFn = void* (*)();
        static CheckFn initialized = (CheckFn)dlsym(RTLD_DEFAULT, "Py_IsInitialized");
        static CheckFn holds = (CheckFn)dlsym(RTLD_DEFAULT, "PyGILState_Check");
        static SaveFn save = (SaveFn)dlsym(RTLD_DEFAULT, "PyEval_SaveThread");
        if (initialized && holds && save && initialized() && holds()) state = save();
    }
    ~GilRelease() {
        using RestoreFn = void (*)(void*);
        static RestoreFn restore = (RestoreFn)dlsym(RTLD_DEFAULT, "PyEval_RestoreThread");
        if (state && restore) restore(state);
    }
};

void torch_current(Model* m, const torch::Tensor& v, const torch::Tensor& z, torch::Tensor& i, torch::Tensor& g) {
    torch::NoGradGuard ng;
    i = m->module.get_method("current")({v, z}).toTensor().to(torch::kFloat64).contiguous();
    {
        GilRelease nogil;
        torch::AutoGradMode enable(true);  // the exported conductance may use autograd
        g = m->module.get_method("conductance")({v, z}).toTensor().to(torch::kFloat64).contiguous();
    }
}

double clamp_v_slow(Model* m, int instance, double v, bool& clamped);

inline double clamp_v(Model* m, int instance, double v, bool& clamped) {
    clamped = false;
    if (v >= m->vmin && v <= m->vmax) return v;  // the common case, inlined
    return clamp_v_slow(m, instance, v, clamped);
}

double clamp_v_slow(Model* m, int instance, double v, bool& clamped) {
    if (std::isnan(v)) return v;
    clamped = true;
    m->out_of_range.fetch_add(1);
    if (m->raise.load() == kClampWarn && !m->warned.exchange(1)) {
        std::fprintf(stderr,
                     "neuron-hybrid warning: v = %g mV is outside the trained range [%g, %g] mV of %s; "
                     "clamping v to the range (warned once per model; use on_out_of_range='raise' to stop "
                     "instead)\n",
                     v, m->vmin, m->vmax, where(m, instance).c_str());
    }
    return v < m->vmin ? m->vmin : m->vmax;
}

constexpr int kSmallTape = 128;  // slots of a tape run from a stack buffer

// Runs a tape; returns its values (tangents at + t.total). Small scalar tapes (channel formulas) run
// in the caller's stack buffer `small` [2 * kSmallTape], avoiding the thread-local lookup per call.
__attribute__((always_inline)) inline const double* eval_tape(const Tape& t, double v, const double* z, bool with_dot,
                                                              double* small) {
    if (t.scalar && t.total <= kSmallTape) {
        run_scalar(t, v, z, small);
        return small;
    }
    thread_local std::vector<double> buf;
    run_tape(t, v, z, with_dot, buf);
    return buf.data();
}

int rates_one(Model* m, int instance, double v, double* zinf, double* tau, bool check) {
    const int K = m->K;
    switch (m->rates_engine) {
        case ENG_TABLE:
            nhb_table_interp(&m->table_view, v, zinf, tau);
            break;
        case ENG_COMPILED: {
            const Tape& t = m->rates_tape;
            double small[2 * kSmallTape];
            const double* val = eval_tape(t, v, nullptr, false, small);
            const double* zi = t.is_const[t.outputs[0]] ? t.const_pool.data() + t.offset[t.outputs[0]] : val + t.offset[t.outputs[0]];
            const double* ta = t.is_const[t.outputs[1]] ? t.const_pool.data() + t.offset[t.outputs[1]] : val + t.offset[t.outputs[1]];
            for (int k = 0; k < K; ++k) { zinf[k] = zi[k]; tau[k] = ta[k]; }
            break;
        }
        default: {
            torch::Tensor zi, ta;
            torch_rates(m, vec(&v, 1), zi, ta);
            const double* pz = zi.data_ptr<double>();
            const double* pt = ta.data_ptr<double>();
            for (int k = 0; k < K; ++k) { zinf[k] = pz[k]; tau[k] = pt[k]; }
        }
    }
    if (check) {
        for (int k = 0; k < K; ++k) {
            if (!std::isfinite(zinf[k]) || !std::isfinite(tau[k])) {
                std::ostringstream os;
                os << where(m, instance) << ": rates() returned a non-finite value (z_inf[" << k << "] = " << zinf[k]
                   << ", tau[" << k << "] = " << tau[k] << " ms) at v = " << v << " mV";
                return fail(os.str());
            }
            if (!(tau[k] > 0)) {
                std::ostringstream os;
                os << where(m, instance) << ": rates() returned tau[" << k << "] = " << tau[k]
                   << " ms <= 0 at v = " << v << " mV; time constants must be positive";
                return fail(os.str());
            }
        }
    }
    return 0;
}

int current_one(Model* m, int instance, double v, const double* z, double* i, double* g) {
    if (m->current_engine == ENG_COMPILED) {
        const Tape& t = m->current_tape;
        double small[2 * kSmallTape];
        const double* val = eval_tape(t, v, z, true, small);
        const int o = t.outputs[0];
        *i = t.is_const[o] ? t.const_pool[t.offset[o]] : val[t.offset[o]];
        *g = (t.need_dot[o] && !t.is_const[o]) ? val[t.total + t.offset[o]] : 0.0;
    } else {
        torch::Tensor ti, tg;
        torch_current(m, vec(&v, 1), vec(z, m->K).reshape({1, m->K}), ti, tg);
        *i = ti.data_ptr<double>()[0];
        *g = tg.data_ptr<double>()[0];
    }
    return 0;
}

std::string read_extra(const std::map<std::string, std::string>& extra, const std::string& key) {
    auto it = extra.find(key);
    return it == extra.end() ? std::string() : it->second;
}

std::map<std::string, std::string> parse_meta(const std::string& text) {
    std::map<std::string, std::string> kv;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        auto p = line.find('=');
        if (p != std::string::npos) kv[line.substr(0, p)] = line.substr(p + 1);
    }
    return kv;
}

// Builds the rates table from the reference; returns max errors at the cell midpoints.
void build_table(Model* m, double& err_zinf, double& err_tau) {
    const double span = m->vmax - m->vmin;
    int n = (int)std::ceil(span / 0.01) + 1;
    n = std::max(2, std::min(n, 400001));
    const double step = span / (n - 1);
    auto grid = torch::linspace(m->vmin, m->vmax, n, torch::kFloat64);
    torch::Tensor zi, ta;
    torch_rates(m, grid, zi, ta);
    const int K = m->K;
    m->table.assign((size_t)n * 2 * K, 0.0);
    const double* pz = zi.data_ptr<double>();
    const double* pt = ta.data_ptr<double>();
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < K; ++k) {
            m->table[(size_t)i * 2 * K + k] = pz[(size_t)i * K + k];
            m->table[(size_t)i * 2 * K + K + k] = pt[(size_t)i * K + k];
        }
    m->table_view = {m->table.data(), m->vmin, m->vmax, 1.0 / step, n, K};
    // midpoints (worst case of linear interpolation), all cells up to 20000, else a stride
    const int stride = std::max(1, (n - 1) / 20000);
    std::vector<double> mids;
    for (int i = 0; i + 1 < n; i += stride) mids.push_back(m->vmin + (i + 0.5) * step);
    torch::Tensor rz, rt;
    torch_rates(m, vec(mids.data(), (int64_t)mids.size()), rz, rt);
    const int saved = m->rates_engine;
    m->rates_engine = ENG_TABLE;
    err_zinf = err_tau = 0;
    // z_inf errors relative to max(1, max |z_inf|): gates (0..1) stay absolute; latent voltages that span
    // hundreds of mV (axial currents) are judged at their own scale
    double zscale = 1.0;
    for (size_t j = 0; j < (size_t)n * K; ++j) zscale = std::max(zscale, std::fabs(pz[j]));
    std::vector<double> z(NH_KMAX), t(NH_KMAX);
    for (size_t j = 0; j < mids.size(); ++j) {
        rates_one(m, -1, mids[j], z.data(), t.data(), false);
        for (int k = 0; k < K; ++k) {
            const double refz = rz.data_ptr<double>()[j * K + k], reft = rt.data_ptr<double>()[j * K + k];
            err_zinf = std::max(err_zinf, std::fabs(z[k] - refz) / zscale);
            err_tau = std::max(err_tau, std::fabs(t[k] - reft) / std::max(std::fabs(reft), 1e-300));
        }
    }
    m->rates_engine = saved;
}

// Compares the compiled tapes with the reference on a fixed set of (v, z) samples.
void verify_tapes(Model* m, double& err_zinf, double& err_tau, double& err_i, double& err_g) {
    const int K = m->K;
    const int n = 257;
    std::mt19937 rng(12345);
    std::uniform_real_distribution<double> U(m->vmin, m->vmax);
    std::vector<double> vs(n), vz(n);
    for (int j = 0; j < n; ++j) {
        vs[j] = m->vmin + (m->vmax - m->vmin) * j / (n - 1.0);
        vz[j] = U(rng);
    }
    torch::Tensor zi, ta, zs, dummy;
    torch_rates(m, vec(vs.data(), n), zi, ta);
    torch_rates(m, vec(vz.data(), n), zs, dummy);  // plausible latent states z = z_inf(v')
    err_zinf = err_tau = err_i = err_g = 0;
    std::vector<double> z(NH_KMAX), t(NH_KMAX);
    if (m->has_rates_tape) {
        const int saved = m->rates_engine;
        m->rates_engine = ENG_COMPILED;
        for (int j = 0; j < n; ++j) {
            rates_one(m, -1, vs[j], z.data(), t.data(), false);
            for (int k = 0; k < K; ++k) {
                const double refz = zi.data_ptr<double>()[j * K + k], reft = ta.data_ptr<double>()[j * K + k];
                err_zinf = std::max(err_zinf, std::fabs(z[k] - refz));
                err_tau = std::max(err_tau, std::fabs(t[k] - reft) / std::max(std::fabs(reft), 1e-300));
            }
        }
        m->rates_engine = saved;
    }
    if (m->has_current_tape) {
        torch::Tensor ri, rg;
        auto zz = K > 0 ? zs.contiguous() : torch::zeros({n, 0}, torch::kFloat64);
        torch_current(m, vec(vs.data(), n), zz, ri, rg);
        double imax = 0, gmax = 0;
        for (int j = 0; j < n; ++j) {
            imax = std::max(imax, std::fabs(ri.data_ptr<double>()[j]));
            gmax = std::max(gmax, std::fabs(rg.data_ptr<double>()[j]));
        }
        const int saved = m->current_engine;
        m->current_engine = ENG_COMPILED;
        for (int j = 0; j < n; ++j) {
            double i, g;
            current_one(m, -1, vs[j], K > 0 ? zz.data_ptr<double>() + (size_t)j * K : nullptr, &i, &g);
            err_i = std::max(err_i, std::fabs(i - ri.data_ptr<double>()[j]) / std::max(imax, 1e-300));
            err_g = std::max(err_g, std::fabs(g - rg.data_ptr<double>()[j]) / std::max(gmax, 1e-300));
        }
        m->current_engine = saved;
    }
}

}  // namespace

extern "C" {

const char* nhb_last_error(void) { return t_error.c_str(); }

int nhb_load(const char* path, const char* engine, int raise_out_of_range) {
    std::string eng = engine ? engine : "auto";
    if (eng != "auto" && eng != "torchscript" && eng != "compiled" && eng != "table") {
        fail("unknown engine '" + eng + "': use 'auto', 'torchscript', 'compiled' or 'table'");
        return -1;
    }
    auto m = std::make_unique<Model>();
    m->path = path ? path : "";
    m->raise = raise_out_of_range;
    try {
        at::set_num_threads(1);
        torch::jit::ExtraFilesMap extra{{"nh_meta.txt", ""}, {"nh_rates_tape.txt", ""}, {"nh_current_tape.txt", ""}};
        m->module = torch::jit::load(m->path, torch::kCPU, extra);
        m->module.eval();
        std::map<std::string, std::string> ex(extra.begin(), extra.end());
        auto meta = parse_meta(read_extra(ex, "nh_meta.txt"));
        if (meta.empty()) {
            fail("'" + m->path + "' has no neuron-hybrid metadata: it was not written by neuron_hybrid.export; "
                 "load the module in Python and save it with neuron_hybrid.export(module, path)");
            return -1;
        }
        m->K = std::stoi(meta["n_latent"]);
        m->vmin = std::stod(meta["v_min"]);
        m->vmax = std::stod(meta["v_max"]);
        m->kind = meta["kind"] == "point" ? 1 : 0;
        m->name = meta.count("name") ? meta["name"] : m->path;
        if (m->K < 0 || m->K > NH_KMAX) {
            fail("'" + m->path + "' has n_latent = " + std::to_string(m->K) + "; the mechanisms support 0.." +
                 std::to_string(NH_KMAX));
            return -1;
        }
        for (const char* meth : {"rates", "current", "conductance"})
            if (!m->module.find_method(meth)) {
                fail("'" + m->path + "' has no method '" + meth + "'; export it with neuron_hybrid.export");
                return -1;
            }
        const std::string rt = read_extra(ex, "nh_rates_tape.txt"), ct = read_extra(ex, "nh_current_tape.txt");
        std::string tape_note;
        try {
            if (!rt.empty()) { m->rates_tape = parse_tape(rt); m->has_rates_tape = true; }
            if (!ct.empty()) { m->current_tape = parse_tape(ct); m->has_current_tape = true; }
        } catch (const std::exception& e) {
            m->has_rates_tape = m->has_current_tape = false;
            tape_note = e.what();
        }
        double ez = 0, et = 0, ei = 0, eg = 0;
        verify_tapes(m.get(), ez, et, ei, eg);
        const double tol_exact = 1e-9;
        const bool rates_tape_ok = m->has_rates_tape && ez <= tol_exact && et <= tol_exact;
        const bool current_tape_ok = m->has_current_tape && ei <= tol_exact && eg <= 1e-7;
        if ((eng == "compiled" || eng == "table") && !m->has_current_tape) {
            fail("engine '" + eng + "' was requested but '" + m->path +
                 "' has no compiled tape for current() (the TorchScript graph uses operations the compiler does "
                 "not support" + (tape_note.empty() ? "" : ": " + tape_note) + "); use engine='torchscript' or 'auto'");
            return -1;
        }
        if (eng == "compiled" && !m->has_rates_tape) {
            fail("engine 'compiled' was requested but '" + m->path + "' has no compiled tape for rates(); use 'table' or 'auto'");
            return -1;
        }
        double tz = 0, tt = 0;
        if (eng == "torchscript") {
            m->rates_engine = m->current_engine = ENG_TORCH;
        } else if (eng == "compiled") {
            m->rates_engine = m->current_engine = ENG_COMPILED;
            m->err[0] = ez; m->err[1] = et; m->err[2] = ei; m->err[3] = eg;
        } else {
            if (m->K > 0) build_table(m.get(), tz, tt);
            const bool table_ok = tz <= 1e-6 && tt <= 1e-5;
            if (eng == "table" || (table_ok && m->K > 0)) {
                m->rates_engine = m->K > 0 ? ENG_TABLE : ENG_COMPILED;
                m->err[0] = tz; m->err[1] = tt;
            } else if (rates_tape_ok) {
                m->rates_engine = ENG_COMPILED;
                m->err[0] = ez; m->err[1] = et;
            } else if (m->K == 0) {
                m->rates_engine = ENG_TABLE;  // nothing to evaluate
            } else {
                m->rates_engine = ENG_TORCH;
            }
            if (eng == "table" || current_tape_ok) {
                m->current_engine = ENG_COMPILED;
                m->err[2] = ei; m->err[3] = eg;
            } else {
                m->current_engine = ENG_TORCH;
            }
        }
        if (m->K > 0 && m->rates_engine == ENG_TABLE) {
            // inline interpolation skips the per-call checks: expose only a table that passes them
            bool valid = true;
            for (int i = 0; i < m->table_view.n && valid; ++i)
                for (int k = 0; k < m->K; ++k) {
                    const double zv = m->table[(size_t)i * 2 * m->K + k], tv = m->table[(size_t)i * 2 * m->K + m->K + k];
                    if (!std::isfinite(zv) || !std::isfinite(tv) || !(tv > 0)) { valid = false; break; }
                }
            m->table_exposed = valid;
        }
        static const char* names[] = {"torchscript", "compiled", "table"};
        m->engine_name = std::string("rates=") + (m->K == 0 ? "none" : names[m->rates_engine]) +
                         ",current=" + names[m->current_engine];
    } catch (const c10::Error& e) {
        std::string what = e.what_without_backtrace();
        fail("could not load '" + m->path + "' as a TorchScript learned current: " + what);
        return -1;
    } catch (const std::exception& e) {
        fail("could not load '" + m->path + "': " + e.what());
        return -1;
    }
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    const int h = g_n_models.load();
    if (h >= kMaxModels) {
        fail("too many learned-current models loaded in this process");
        return -1;
    }
    g_models[h].store(m.release());
    g_n_models.store(h + 1);
    return h;
}

int nhb_n_latent(int h) { Model* m = get(h); return m ? m->K : -1; }
int nhb_kind(int h) { Model* m = get(h); return m ? m->kind : -1; }
double nhb_v_min(int h) { Model* m = get(h); return m ? m->vmin : NAN; }
double nhb_v_max(int h) { Model* m = get(h); return m ? m->vmax : NAN; }
const char* nhb_engine(int h) { Model* m = get(h); return m ? m->engine_name.c_str() : nullptr; }
double nhb_engine_error(int h, int which) {
    Model* m = get(h);
    if (!m || which < 0 || which > 3) return -1;
    return m->err[which];
}
int nhb_set_raise(int h, int raise) {
    Model* m = get(h);
    if (!m) return fail("invalid learned-current handle " + std::to_string(h));
    m->raise = raise;
    return 0;
}
int nhb_set_instance_name(int h, int instance, const char* name) {
    Model* m = get(h);
    if (!m) return fail("invalid learned-current handle " + std::to_string(h));
    std::lock_guard<std::mutex> lock(m->names_mutex);
    m->names[instance] = name ? name : "";
    return 0;
}
long nhb_out_of_range_count(int h) { Model* m = get(h); return m ? m->out_of_range.load() : -1; }

int nhb_rates_n(int h, int instance, double v, double* zinf, double* tau, int n_out) {
    Model* m = get(h);
    if (!m)
        return fail("learned-current mechanism instance " + std::to_string(instance) + " has model handle " +
                    std::to_string(h) + ", which is not a loaded model: set it with LearnedCurrent.insert() "
                    "or from hoc with model_id_<suffix> = nh_load(\"file.pt\")");
    bool clamped;
    const double vc = clamp_v(m, instance, v, clamped);
    if (clamped && m->raise.load() == kRaise) {
        std::ostringstream os;
        os << where(m, instance) << ": v = " << v << " mV is outside the trained range [" << m->vmin << ", "
           << m->vmax << "] mV (on_out_of_range='raise')";
        return fail(os.str());
    }
    if (std::isnan(vc)) return fail(where(m, instance) + ": membrane potential is NaN");
    if (n_out < m->K) {
        std::ostringstream os;
        os << where(m, instance) << " has " << m->K << " latents but the mechanism holds " << n_out
           << "; insert it with LearnedCurrent.insert(), which picks a mechanism family large enough";
        return fail(os.str());
    }
    try {
        if (rates_one(m, instance, vc, zinf, tau, true)) return 1;
    } catch (const std::exception& e) {
        return fail(where(m, instance) + ": rates() failed: " + e.what());
    }
    for (int k = m->K; k < n_out; ++k) { zinf[k] = 0.0; tau[k] = 1e300; }  // inert: exp(-dt/tau) = 1
    return 0;
}

const nhb_table_t* nhb_table(int h) {
    Model* m = get(h);
    return (m && m->table_exposed) ? &m->table_view : nullptr;
}

int nhb_rates(int h, int instance, double v, double* zinf, double* tau) {
    return nhb_rates_n(h, instance, v, zinf, tau, NH_KMAX);
}

int nhb_current(int h, int instance, double v, const double* z, double* i, double* g) {
    Model* m = get(h);
    if (!m)
        return fail("learned-current mechanism instance " + std::to_string(instance) + " has model handle " +
                    std::to_string(h) + ", which is not a loaded model");
    bool clamped;
    const double vc = clamp_v(m, instance, v, clamped);
    if (clamped && m->raise.load() == kRaise) {
        std::ostringstream os;
        os << where(m, instance) << ": v = " << v << " mV is outside the trained range [" << m->vmin << ", "
           << m->vmax << "] mV (on_out_of_range='raise')";
        return fail(os.str());
    }
    try {
        current_one(m, instance, vc, z, i, g);
    } catch (const std::exception& e) {
        return fail(where(m, instance) + ": current() failed: " + e.what());
    }
    if (clamped) *g = 0.0;
    if (!std::isfinite(*i) || !std::isfinite(*g)) {
        std::ostringstream os;
        os << where(m, instance) << ": current() returned a non-finite value (i = " << *i << ", di/dv = " << *g
           << ") at v = " << v << " mV, z = [";
        for (int k = 0; k < m->K; ++k) os << (k ? ", " : "") << z[k];
        os << "]";
        return fail(os.str());
    }
    return 0;
}

int nhb_rates_batch(int h, int n, const double* v, double* zinf, double* tau) {
    Model* m = get(h);
    if (!m) return fail("invalid learned-current handle " + std::to_string(h));
    double zi[NH_KMAX], ta[NH_KMAX];
    for (int j = 0; j < n; ++j) {
        if (nhb_rates(h, -1, v[j], zi, ta)) return 1;
        for (int k = 0; k < m->K; ++k) { zinf[(size_t)j * m->K + k] = zi[k]; tau[(size_t)j * m->K + k] = ta[k]; }
    }
    return 0;
}

int nhb_current_batch(int h, int n, const double* v, const double* z, double* i, double* g) {
    Model* m = get(h);
    if (!m) return fail("invalid learned-current handle " + std::to_string(h));
    for (int j = 0; j < n; ++j)
        if (nhb_current(h, -1, v[j], m->K ? z + (size_t)j * m->K : nullptr, i + j, g + j)) return 1;
    return 0;
}

}  // extern "C"
