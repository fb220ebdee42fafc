// agentdb._native.{sdpa, multi_head_attention, flash_attention, hyperbolic_attention,
// moe_gating}: the Python face of cpp/attention.hpp, with the API, results and errors of
// python/agentdb/_numpy_attention.py. Keys and values are not scanned for NaN/inf up front (a
// non-finite input always gives a non-finite logit or output, which is checked; then the
// inputs are scanned to name the culprit).
#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "attention.hpp"
#include "common.hpp"
#include "kernels.hpp"

namespace agentdb {
namespace bindings {
namespace {

std::size_t attn_threads(py::handle h) {
  int64_t t = graph_int(h, "threads");
  if (t < 0)
    throw py::value_error("threads must be >= 0 (0 = all cores), got " + std::to_string(t));
  return static_cast<std::size_t>(t);
}

double attn_positive(py::handle h, const char* what, bool allow_zero = false) {
  double v = graph_float(h, what);
  if (!std::isfinite(v) || v < 0.0 || (v == 0.0 && !allow_zero))
    throw py::value_error(std::string(what) + " must be a finite number " +
                          (allow_zero ? ">= 0" : "> 0") + ", got " +
                          py::repr(h).cast<std::string>());
  return v;
}

Matrix attn_rows(py::handle obj, const char* what, bool check_finite) {
  Matrix m = as_matrix(obj, what, check_finite);
  if (m.one)
    throw py::value_error(std::string(what) + " must be 2-D (rows, dim), got 1-D");
  return m;
}

struct AttnIn {
  Matrix Q, K, V;
};

AttnIn attn_inputs(py::handle q, py::handle k, py::handle v, bool check_finite) {
  AttnIn in{as_matrix(q, "queries"), attn_rows(k, "keys", check_finite),
            attn_rows(v, "values", check_finite)};
  if (in.Q.cols != in.K.cols)
    throw py::value_error("dimension mismatch: queries have dim " + std::to_string(in.Q.cols) +
                          ", keys have dim " + std::to_string(in.K.cols));
  if (in.K.rows != in.V.rows)
    throw py::value_error("keys and values must have the same number of rows, got " +
                          std::to_string(in.K.rows) + " keys and " + std::to_string(in.V.rows) +
                          " values");
  return in;
}

std::size_t attn_work_threads(const AttnIn& in, std::size_t threads) {
  double work = double(in.Q.rows) * double(in.K.rows) * double(in.K.cols + in.V.cols);
  return work < double(1 << 22) ? 1 : threads;  // below ~0.2 ms one thread is as fast
}

// After a failed run: name a non-finite input, else report the overflow.
[[noreturn]] void attn_nonfinite(const AttnIn& in) {
  require_finite(in.K.arr, "keys");
  require_finite(in.V.arr, "values");
  throw py::value_error(
      "attention produced NaN or infinity: logits or values overflow float32 (scale them down)");
}

py::object dot_attention(py::handle q, py::handle k, py::handle v, std::size_t heads,
                         py::handle scale_obj, bool want_weights, std::size_t block,
                         py::handle threads_obj, bool head_axis) {
  std::size_t threads = attn_threads(threads_obj);
  AttnIn in = attn_inputs(q, k, v, false);
  if (in.Q.cols % heads != 0)
    throw py::value_error("heads=" + std::to_string(heads) + " does not divide the query/key dim " +
                          std::to_string(in.Q.cols));
  if (in.V.cols % heads != 0)
    throw py::value_error("heads=" + std::to_string(heads) + " does not divide the value dim " +
                          std::to_string(in.V.cols));
  AttnProblem p;
  p.Q = in.Q.data(), p.m = in.Q.rows, p.ldq = in.Q.cols;
  p.K = in.K.data(), p.n = in.K.rows, p.ldk = in.K.cols;
  p.V = in.V.data(), p.ldv = in.V.cols;
  p.d = in.Q.cols / heads, p.dv = in.V.cols / heads, p.heads = heads;
  double scale = scale_obj.is_none() ? 1.0 / std::sqrt(double(p.d))
                                     : attn_positive(scale_obj, "scale");
  py::array_t<float> out = in.Q.one ? vector_out({in.V.cols}) : vector_out({p.m, in.V.cols});
  p.O = out.mutable_data(), p.ldo = in.V.cols;
  py::array_t<float> weights;
  if (want_weights) {
    std::vector<std::size_t> shape;
    if (head_axis) shape.push_back(heads);
    if (!in.Q.one) shape.push_back(p.m);
    shape.push_back(p.n);
    weights = vector_out(shape);
    p.W = weights.mutable_data();
  }
  bool ok;
  {
    py::gil_scoped_release nogil;
    const AttnKernels& ak = active_attn_kernels();
    DotLogits logits{&ak, &p};
    ok = attend(ak, p, logits, static_cast<float>(scale), block, nullptr,
                attn_work_threads(in, threads));
    ok = ok && all_finite(p.O, p.m * in.V.cols);
  }
  if (!ok) attn_nonfinite(in);
  if (want_weights) return py::make_tuple(out, weights);
  return std::move(out);
}

py::object py_sdpa(py::handle q, py::handle k, py::handle v, py::handle scale,
                   bool return_weights, py::handle threads) {
  return dot_attention(q, k, v, 1, scale, return_weights, 0, threads, false);
}

py::object py_mha(py::handle q, py::handle k, py::handle v, py::handle heads_obj,
                  py::handle scale, bool return_weights, py::handle threads) {
  int64_t heads = graph_int(heads_obj, "heads");
  if (heads < 1) throw py::value_error("heads must be >= 1, got " + std::to_string(heads));
  return dot_attention(q, k, v, static_cast<std::size_t>(heads), scale, return_weights, 0,
                       threads, true);
}

py::object py_flash(py::handle q, py::handle k, py::handle v, py::handle scale,
                    py::handle block_obj, py::handle threads) {
  int64_t block = graph_int(block_obj, "block_size");
  if (block < 1) throw py::value_error("block_size must be >= 1, got " + std::to_string(block));
  return dot_attention(q, k, v, 1, scale, false, static_cast<std::size_t>(block), threads, false);
}

constexpr double kBallMargin = 1e-6;  // inputs need c|x|^2 <= 1 - kBallMargin
constexpr double kBallClip = 1e-5;    // outputs: tanh(sqrt(c)|u|) clipped to 1 - kBallClip

// 1 - c|x|^2 of every row (the squared norms computed without the GIL), checking that each
// row is strictly inside the ball.
std::vector<double> ball_gaps(const KernelTable& kt, const Matrix& X, double c, const char* what) {
  std::vector<double> gap(X.rows);
  {
    py::gil_scoped_release nogil;
    for (std::size_t i = 0; i < X.rows; ++i) {
      const float* x = X.data() + i * X.cols;
      gap[i] = 1.0 - c * kt.dot(x, x, X.cols);
    }
  }
  for (std::size_t i = 0; i < X.rows; ++i) {
    if (!(gap[i] >= kBallMargin)) {
      std::ostringstream msg;
      msg << what << " row " << i << " is not strictly inside the Poincare ball of curvature c="
          << c << " (c*|x|^2 = " << 1.0 - gap[i] << ", must be <= 1 - 1e-6); map Euclidean "
          << "vectors into the ball with expmap0() or project()";
      throw py::value_error(msg.str());
    }
  }
  return gap;
}

py::object py_hyperbolic(py::handle q, py::handle k, py::handle v, py::handle c_obj,
                         py::handle beta_obj, bool return_weights, py::handle threads_obj) {
  std::size_t threads = attn_threads(threads_obj);
  double c = attn_positive(c_obj, "c");
  double beta = attn_positive(beta_obj, "beta", true);
  AttnIn in = attn_inputs(q, k, v, true);
  const KernelTable& kt = active_kernels();
  std::vector<double> bq = ball_gaps(kt, in.Q, c, "queries");
  std::vector<double> bk = ball_gaps(kt, in.K, c, "keys");
  const bool v_is_k = in.V.data() == in.K.data() && in.V.cols == in.K.cols;  // memories as both
  std::vector<double> bv = v_is_k ? bk : ball_gaps(kt, in.V, c, "values");
  const double sc = std::sqrt(c);
  std::vector<float> lam(in.V.rows);  // log0(v) = lam * v
  for (std::size_t j = 0; j < in.V.rows; ++j) {
    double r = sc * std::sqrt(std::max(0.0, (1.0 - bv[j]) / c));
    lam[j] = r > 0.0 ? static_cast<float>(std::atanh(r) / r) : 1.0f;
  }
  AttnProblem p;
  p.Q = in.Q.data(), p.m = in.Q.rows, p.ldq = in.Q.cols;
  p.K = in.K.data(), p.n = in.K.rows, p.ldk = in.K.cols;
  p.V = in.V.data(), p.ldv = in.V.cols;
  p.d = in.Q.cols, p.dv = in.V.cols;
  py::array_t<float> out = in.Q.one ? vector_out({p.dv}) : vector_out({p.m, p.dv});
  p.O = out.mutable_data(), p.ldo = p.dv;
  py::array_t<float> weights;
  if (return_weights) {
    weights = in.Q.one ? vector_out({p.n}) : vector_out({p.m, p.n});
    p.W = weights.mutable_data();
  }
  bool ok;
  {
    py::gil_scoped_release nogil;
    std::vector<float> qn(bq.size()), kn(bk.size()), bk_inv(bk.size());
    for (std::size_t i = 0; i < bq.size(); ++i) qn[i] = static_cast<float>((1.0 - bq[i]) / c);
    for (std::size_t j = 0; j < bk.size(); ++j) {
      kn[j] = static_cast<float>((1.0 - bk[j]) / c);
      bk_inv[j] = static_cast<float>(1.0 / bk[j]);
    }
    const AttnKernels& ak = active_attn_kernels();
    HyperbolicLogits logits{&ak, &kt, &p, qn.data(), kn.data(), bq.data(), bk_inv.data(), c, beta};
    ok = attend(ak, p, logits, 1.0f, 0, lam.data(), attn_work_threads(in, threads));
    for (std::size_t i = 0; i < p.m; ++i) {  // exp0 of the tangent-space mean, clipped
      float* u = p.O + i * p.dv;
      double nu = 0.0;
      for (std::size_t col = 0; col < p.dv; ++col) nu += double(u[col]) * u[col];
      nu = std::sqrt(nu);
      double f = nu > 0.0 ? std::min(std::tanh(sc * nu), 1.0 - kBallClip) / (sc * nu) : 0.0;
      for (std::size_t col = 0; col < p.dv; ++col) u[col] = static_cast<float>(u[col] * f);
    }
    ok = ok && all_finite(p.O, p.m * p.dv);
  }
  if (!ok) attn_nonfinite(in);
  if (return_weights) return py::make_tuple(out, weights);
  return std::move(out);
}

py::tuple py_moe(py::handle x, py::handle gate, py::handle k_obj, py::handle bias_obj,
                 py::handle threads_obj) {
  std::size_t threads = attn_threads(threads_obj);
  int64_t k = graph_int(k_obj, "k");
  Matrix X = as_matrix(x, "x");
  Matrix Wg = attn_rows(gate, "gate", true);
  if (Wg.rows != X.cols)
    throw py::value_error("dimension mismatch: x has dim " + std::to_string(X.cols) +
                          ", gate has " + std::to_string(Wg.rows) +
                          " rows (expected (dim, experts))");
  const std::size_t E = Wg.cols;
  if (k < 1 || static_cast<std::size_t>(k) > E)
    throw py::value_error("k must be in [1, " + std::to_string(E) +
                          "] (the number of experts), got " + std::to_string(k));
  std::optional<Matrix> B;
  if (!bias_obj.is_none()) {
    B = as_matrix(bias_obj, "bias");
    if (!B->one || B->cols != E)
      throw py::value_error("bias must have shape (" + std::to_string(E) + ",), got " +
                            py::repr(B->arr.attr("shape")).cast<std::string>());
  }
  const std::size_t kk = static_cast<std::size_t>(k);
  std::vector<std::size_t> shape = X.one ? std::vector<std::size_t>{kk}
                                         : std::vector<std::size_t>{X.rows, kk};
  py::array_t<int64_t> ids(shape);
  py::array_t<float> w(shape);
  bool ok;
  {
    py::gil_scoped_release nogil;
    std::vector<float> Wt(E * X.cols);
    for (std::size_t r = 0; r < X.cols; ++r)
      for (std::size_t e = 0; e < E; ++e) Wt[e * X.cols + r] = Wg.data()[r * E + e];
    std::size_t t = X.rows * E * X.cols < (1u << 24) ? 1 : threads;  // ~1 ms of work
    ok = moe_topk(active_attn_kernels(), X.data(), X.rows, X.cols, Wt.data(), E,
                  B ? B->data() : nullptr, kk, ids.mutable_data(), w.mutable_data(), t);
  }
  if (!ok) throw py::value_error("gate logits overflow float32 (scale x or gate down)");
  return py::make_tuple(ids, w);
}

}  // namespace

void bind_attention(py::module_& mod) {
  py::none none;
  mod.def("sdpa", &py_sdpa, py::arg("queries"), py::arg("keys"), py::arg("values"),
          py::kw_only(), py::arg("scale") = none, py::arg("return_weights") = false,
          py::arg("threads") = 0,
          "softmax(Q K^T * scale) V (scale defaults to 1/sqrt(d)); optionally the weights.");
  mod.def("multi_head_attention", &py_mha, py::arg("queries"), py::arg("keys"),
          py::arg("values"), py::kw_only(), py::arg("heads"), py::arg("scale") = none,
          py::arg("return_weights") = false, py::arg("threads") = 0,
          "Per-head attention on column slices, outputs concatenated; weights (h, m, n).");
  mod.def("flash_attention", &py_flash, py::arg("queries"), py::arg("keys"), py::arg("values"),
          py::kw_only(), py::arg("scale") = none, py::arg("block_size") = 256,
          py::arg("threads") = 0,
          "sdpa computed over key blocks with the online softmax (no m x n matrix).");
  mod.def("hyperbolic_attention", &py_hyperbolic, py::arg("queries"), py::arg("keys"),
          py::arg("values"), py::kw_only(), py::arg("c") = 1.0, py::arg("beta") = 1.0,
          py::arg("return_weights") = false, py::arg("threads") = 0,
          "Poincare-ball attention: softmax(-beta d_c(q, k)), exp0(sum w log0(v)).");
  mod.def("moe_gating", &py_moe, py::arg("x"), py::arg("gate"), py::kw_only(), py::arg("k") = 2,
          py::arg("bias") = none, py::arg("threads") = 0,
          "Top-k experts of x @ gate + bias per row: (ids int64, softmax weights float32).");
}

}  // namespace bindings
}  // namespace agentdb
