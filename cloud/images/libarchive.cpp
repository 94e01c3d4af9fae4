#include "cloud/images/libarchive.hpp"

#include <dlfcn.h>

namespace gpurun::cloud::libarchive {

const Api& api() {
  static const Api loaded = [] {
    Api a;
    void* library = ::dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
      const char* why = ::dlerror();
      a.error = std::string("cannot load libarchive.so.13 (") + (why != nullptr ? why : "not found") +
                "); install the libarchive13 package";
      return a;
    }
#define GPURUN_LIBARCHIVE_LOAD(name)                                                                \
  a.name = reinterpret_cast<decltype(a.name)>(::dlsym(library, #name)); /* NOLINT */               \
  if (a.name == nullptr && a.error.empty()) a.error = "libarchive.so.13 lacks " #name "; install a newer libarchive13";
    GPURUN_LIBARCHIVE_FUNCTIONS(GPURUN_LIBARCHIVE_LOAD)
#undef GPURUN_LIBARCHIVE_LOAD
    return a;
  }();
  return loaded;
}

}  // namespace gpurun::cloud::libarchive
