#include "util/dynamic_library.hpp"

#include <dlfcn.h>

#include <string_view>
#include <utility>

namespace gpurun::util {

Result<DynamicLibrary> DynamicLibrary::open(const std::string& name) {
  ::dlerror();  // clear a stale error
  void* handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* error = ::dlerror();
    std::string_view why = error != nullptr ? error : "unknown error";
    if (why.substr(0, name.size() + 2) == name + ": ") why.remove_prefix(name.size() + 2);
    return Error{ExitCode::failure, "cannot load " + name + ": " + std::string(why)};
  }
  return DynamicLibrary(handle);
}

DynamicLibrary::DynamicLibrary(DynamicLibrary&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), keep_loaded_(other.keep_loaded_) {}

DynamicLibrary& DynamicLibrary::operator=(DynamicLibrary&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr && !keep_loaded_) ::dlclose(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
    keep_loaded_ = other.keep_loaded_;
  }
  return *this;
}

DynamicLibrary::~DynamicLibrary() {
  if (handle_ != nullptr && !keep_loaded_) ::dlclose(handle_);
}

void* DynamicLibrary::address(const char* name) const { return ::dlsym(handle_, name); }

}  // namespace gpurun::util
