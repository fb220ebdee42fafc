// Column<T>: an array that either owns its elements (a std::vector) or views a read-only
// section of a memory-mapped file. Reads are the same pointer + index either way; the first
// mutable access to a view copies it into memory (copy on write), so a structure built from
// Columns can serve a mapped file in place and still take writes.
//
// Mutable access (non-const operator[], data(), push_back...) on a view copies it; callers
// that share a structure between threads take their writer lock before any of it (the
// hypergraph copies every column at the start of each write, under its unique lock).
#pragma once
#include <cstddef>
#include <utility>
#include <vector>

namespace agentdb {

template <class T>
class Column {
 public:
  Column() = default;
  Column(std::size_t n, const T& value) : v_(n, value) { sync(); }
  Column(const Column& o) : v_(o.begin(), o.end()) { sync(); }  // a copy always owns
  Column& operator=(const Column& o) {
    if (this != &o) {
      std::vector<T> tmp(o.begin(), o.end());
      v_.swap(tmp);
      view_ = false;
      sync();
    }
    return *this;
  }

  // ---- reads (identical for owned and viewed columns) --------------------------------------
  std::size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  const T* data() const { return ptr_; }
  const T* begin() const { return ptr_; }
  const T* end() const { return ptr_ + n_; }
  const T& operator[](std::size_t i) const { return ptr_[i]; }
  const T& back() const { return ptr_[n_ - 1]; }
  // Bytes held in memory by this column (0 for a view: those pages belong to the file).
  std::size_t owned_bytes() const { return view_ ? 0 : v_.capacity() * sizeof(T); }
  bool is_view() const { return view_; }

  // ---- views -------------------------------------------------------------------------------
  // Reads `n` elements at `p` in place (the caller keeps the memory alive and unchanged).
  void view(const T* p, std::size_t n) {
    std::vector<T>().swap(v_);
    ptr_ = const_cast<T*>(p);  // never written through: every mutable access calls own()
    n_ = n;
    view_ = true;
  }
  // Copies a view into memory (no-op when owned).
  void own() {
    if (!view_) return;
    std::vector<T> tmp(ptr_, ptr_ + n_);
    v_.swap(tmp);
    view_ = false;
    sync();
  }

  // ---- writes (a view is copied first) ------------------------------------------------------
  T* data() {
    own();
    return ptr_;
  }
  T& operator[](std::size_t i) {
    own();
    return ptr_[i];
  }
  void push_back(const T& x) {
    own();
    v_.push_back(x);
    sync();
  }
  void resize(std::size_t n) {
    own();
    v_.resize(n);
    sync();
  }
  void resize(std::size_t n, const T& x) {
    own();
    v_.resize(n, x);
    sync();
  }
  void assign(std::size_t n, const T& x) {
    v_.assign(n, x);
    view_ = false;
    sync();
  }
  void reserve(std::size_t n) {
    own();
    v_.reserve(n);
    sync();
  }
  void clear() {
    v_.clear();
    view_ = false;
    sync();
  }
  // Exchanges contents with a vector (this column then owns; `other` gets the old elements).
  void swap(std::vector<T>& other) {
    own();
    v_.swap(other);
    sync();
  }
  // Moves the elements out (copying a view), leaving this column empty and owned.
  std::vector<T> release() {
    own();
    std::vector<T> out;
    out.swap(v_);
    sync();
    return out;
  }

 private:
  void sync() {
    ptr_ = v_.data();
    n_ = v_.size();
  }
  std::vector<T> v_;
  T* ptr_ = nullptr;
  std::size_t n_ = 0;
  bool view_ = false;
};

}  // namespace agentdb
