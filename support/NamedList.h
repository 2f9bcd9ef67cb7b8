// A list of named things (tensor symbols, tensor declarations) in order, with an index by name
// kept in step with it, so that finding one by name is a lookup rather than a walk: an expanded
// network has tens of thousands, and the checker and the passes look them up per statement.
//
// It reads as a vector. An element's name is fixed once it is in the list (the index is by name);
// anything else about it may change in place. Elements come and go through push_back and eraseIf.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace enc {

template <typename T> class NamedList {
public:
  NamedList() = default;
  NamedList(std::initializer_list<T> items) : items_(items) { reindex(); }

  using iterator = typename std::vector<T>::iterator;
  using const_iterator = typename std::vector<T>::const_iterator;
  iterator begin() { return items_.begin(); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  T &operator[](size_t i) { return items_[i]; }
  const T &operator[](size_t i) const { return items_[i]; }
  const T *data() const { return items_.data(); }

  // The element named `name` (the first, should a broken program hold two), or nullptr.
  T *find(const std::string &name) {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &items_[it->second];
  }
  const T *find(const std::string &name) const { return const_cast<NamedList *>(this)->find(name); }

  void push_back(T item) {
    index_.emplace(item.name, items_.size());
    items_.push_back(std::move(item));
  }
  // Removes the elements `pred` holds for, keeping the others' order.
  template <typename Pred> void eraseIf(Pred pred) {
    if (std::erase_if(items_, pred)) reindex();
  }

private:
  std::vector<T> items_;
  std::unordered_map<std::string, size_t> index_; // name -> its first position in items_

  void reindex() {
    index_.clear();
    for (size_t i = 0; i < items_.size(); ++i) index_.emplace(items_[i].name, i);
  }
};

} // namespace enc
