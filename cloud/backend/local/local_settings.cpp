#include "cloud/backend/local/local_settings.hpp"

namespace gpurun::cloud {

BackendKeyParser local_config_keys() {
  return {{}, [](manifest::Checker&, const manifest::YamlNode&, const std::string&, const gpu::Catalog&, CloudConfig& cloud) {
            cloud.probe_gpus = !cloud.gpus_declared;
          }};
}

}  // namespace gpurun::cloud
