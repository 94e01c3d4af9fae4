#pragma once

#include <string>

#include "util/result.hpp"

namespace gpurun::util {

// A shared library opened at run time with dlopen(RTLD_NOW | RTLD_LOCAL), so that a dependency
// costs nothing until first used (README "Speed"). Closed when destroyed unless keep_loaded().
class DynamicLibrary {
 public:
  // Opens `name` (a soname such as "libcurl.so.4" or a path). The error reads
  // "cannot load NAME: WHY", WHY being dlerror()'s text without its "NAME: " prefix.
  static Result<DynamicLibrary> open(const std::string& name);

  DynamicLibrary(DynamicLibrary&& other) noexcept;
  DynamicLibrary& operator=(DynamicLibrary&& other) noexcept;
  DynamicLibrary(const DynamicLibrary&) = delete;
  DynamicLibrary& operator=(const DynamicLibrary&) = delete;
  ~DynamicLibrary();

  // The address of symbol `name`, or nullptr when the library lacks it.
  void* address(const char* name) const;
  // Symbol `name` as a function pointer of type F, or nullptr when the library lacks it.
  template <class F>
  F symbol(const char* name) const {
    return reinterpret_cast<F>(address(name));  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast)
  }
  // Sets `out` to symbol `name`; false when the library lacks it.
  template <class F>
  bool load(const char* name, F& out) const {
    out = symbol<F>(name);
    return out != nullptr;
  }
  // Leaves the library loaded for the rest of the process even after this object is gone
  // (for function tables kept in statics, which may be used while other statics are destroyed).
  void keep_loaded() { keep_loaded_ = true; }

 private:
  explicit DynamicLibrary(void* handle) : handle_(handle) {}
  void* handle_ = nullptr;
  bool keep_loaded_ = false;
};

}  // namespace gpurun::util
