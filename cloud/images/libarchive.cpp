#include "cloud/images/libarchive.hpp"

#include "util/dynamic_library.hpp"

namespace gpurun::cloud::libarchive {

const Api& api() {
  static const Api loaded = [] {
    Api a;
    auto library = util::DynamicLibrary::open("libarchive.so.13");
    if (!library) {
      a.error = library.error().message + "; install the libarchive13 package";
      return a;
    }
    library->keep_loaded();
#define GPURUN_LIBARCHIVE_LOAD(name) \
  if (!library->load(#name, a.name) && a.error.empty()) a.error = "libarchive.so.13 lacks " #name "; install a newer libarchive13";
    GPURUN_LIBARCHIVE_FUNCTIONS(GPURUN_LIBARCHIVE_LOAD)
#undef GPURUN_LIBARCHIVE_LOAD
    return a;
  }();
  return loaded;
}

}  // namespace gpurun::cloud::libarchive
