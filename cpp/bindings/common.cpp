// Argument conversion shared by the binding files (declared in common.hpp).
#include "common.hpp"

namespace agentdb {
namespace bindings {

py::module_& numpy() {
  // Deliberately leaked: a static py::object would be released after the interpreter is gone.
  static py::module_* np = new py::module_(py::module_::import("numpy"));
  return *np;
}

Metric parse_metric(const std::string& m) {
  if (m == "cosine") return Metric::Cosine;
  if (m == "ip") return Metric::IP;
  if (m == "l2") return Metric::L2;
  throw py::value_error("unknown metric '" + m + "': expected one of 'cosine', 'ip', 'l2'");
}

// The one conversion rule for vectors and matrices.
F32Array as_f32(py::handle obj, const char* what) {
  py::array arr = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj)
                                                 : py::array(numpy().attr("asarray")(obj));
  char kind = arr.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u') {
    throw py::type_error(std::string(what) + " must be a real numeric array, got dtype " +
                         py::str(arr.dtype()).cast<std::string>());
  }
  return F32Array::ensure(arr);
}

void require_finite(const F32Array& a, const char* what) {
  if (!all_finite(a.data(), static_cast<std::size_t>(a.size())))
    throw py::value_error(std::string(what) + " contains NaN or infinity");
}

Matrix as_matrix(py::handle obj, const char* what, bool check_finite) {
  Matrix m{as_f32(obj, what)};
  if (m.arr.ndim() == 1) {
    m.rows = 1;
    m.cols = static_cast<std::size_t>(m.arr.shape(0));
    m.one = true;
  } else if (m.arr.ndim() == 2) {
    m.rows = static_cast<std::size_t>(m.arr.shape(0));
    m.cols = static_cast<std::size_t>(m.arr.shape(1));
  } else {
    throw py::value_error(std::string(what) + " must be 1-D or 2-D, got " +
                          std::to_string(m.arr.ndim()) + "-D");
  }
  if (m.rows == 0 || m.cols == 0) throw py::value_error(std::string(what) + " is empty");
  if (check_finite) require_finite(m.arr, what);
  return m;
}

std::vector<int64_t> as_ids(py::handle obj, const char* what) {
  if (PyBool_Check(obj.ptr()))
    throw py::type_error(std::string(what) + " must be integers, got bool");
  if (PyLong_Check(obj.ptr())) return {obj.cast<int64_t>()};
  if (PyList_CheckExact(obj.ptr()) || PyTuple_CheckExact(obj.ptr())) {
    // Fast path for short Python sequences of exact ints (no numpy round trip).
    PyObject* seq = obj.ptr();
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject** items = PySequence_Fast_ITEMS(seq);
    std::vector<int64_t> out;
    out.reserve(static_cast<std::size_t>(n));
    bool plain = true;
    for (Py_ssize_t i = 0; i < n && plain; ++i) {
      if (!PyLong_CheckExact(items[i])) {
        plain = false;
        break;
      }
      int overflow = 0;
      long long v = PyLong_AsLongLongAndOverflow(items[i], &overflow);
      if (overflow) {
        plain = false;  // numpy decides (uint64 or an error naming the problem)
        break;
      }
      out.push_back(v);
    }
    if (plain) return out;
  }
  py::object src = py::reinterpret_borrow<py::object>(obj);
  if (!py::isinstance<py::array>(obj) && !py::isinstance<py::list>(obj) &&
      !py::isinstance<py::tuple>(obj)) {
    if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj))
      throw py::type_error(std::string(what) + " must be integers, got str");
    if (py::hasattr(obj, "__iter__"))
      src = py::module_::import("builtins").attr("list")(obj);  // sets, generators, ...
  }
  py::array arr = numpy().attr("asarray")(src);
  char kind = arr.dtype().kind();
  if (arr.ndim() == 0) arr = arr.attr("reshape")(1);
  if (arr.size() == 0) return {};
  if (kind != 'i' && kind != 'u')
    throw py::type_error(std::string(what) + " must be integers, got dtype " +
                         py::str(arr.dtype()).cast<std::string>());
  if (arr.ndim() > 1) throw py::value_error(std::string(what) + " must be 1-D");
  auto ids = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
  return std::vector<int64_t>(ids.data(), ids.data() + ids.size());
}

py::array_t<float> vector_out(std::vector<std::size_t> shape) {
  return py::array_t<float>(shape);
}

std::string fspath(py::handle path) {
  return py::str(py::module_::import("os").attr("fspath")(path)).cast<std::string>();
}

int64_t graph_int(py::handle h, const char* what) {
  if (PyBool_Check(h.ptr())) throw py::type_error(std::string(what) + " must be an int, got bool");
  PyObject* idx = PyNumber_Index(h.ptr());
  if (!idx) {
    PyErr_Clear();
    throw py::type_error(std::string(what) + " must be an int, got " +
                         std::string(Py_TYPE(h.ptr())->tp_name));
  }
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(idx, &overflow);
  Py_DECREF(idx);
  if (overflow) throw py::value_error(std::string(what) + " does not fit in int64");
  return static_cast<int64_t>(v);
}

double graph_float(py::handle h, const char* what) {
  if (PyBool_Check(h.ptr()) || py::isinstance<py::str>(h) || py::isinstance<py::bytes>(h))
    throw py::type_error(std::string(what) + " must be a real number");
  double v = PyFloat_AsDouble(h.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error(std::string(what) + " must be a real number");
  }
  return v;
}

}  // namespace bindings
}  // namespace agentdb
