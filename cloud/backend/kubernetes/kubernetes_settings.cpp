#include "cloud/backend/kubernetes/kubernetes_settings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <regex>

#include "gpu/spec.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

using manifest::Checker;
using manifest::join_path;
using manifest::YamlNode;

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// A label value: empty, or at most 63 of [A-Za-z0-9-_.] starting and ending alphanumeric.
bool is_label_value(std::string_view text) {
  if (text.empty()) return true;
  if (text.size() > 63 || !is_alnum(text.front()) || !is_alnum(text.back())) return false;
  return std::all_of(text.begin(), text.end(), [](char c) { return is_alnum(c) || c == '-' || c == '_' || c == '.'; });
}

// A label key: [prefix/]name, the name a non-empty label value, the prefix a DNS subdomain.
bool is_label_key(std::string_view text) {
  auto slash = text.find('/');
  std::string_view name = slash == std::string_view::npos ? text : text.substr(slash + 1);
  if (name.empty() || !is_label_value(name)) return false;
  if (slash == std::string_view::npos) return true;
  std::string_view prefix = text.substr(0, slash);
  if (prefix.empty() || prefix.size() > 253) return false;
  return std::all_of(prefix.begin(), prefix.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

void text_key(Checker& check, const YamlNode& map, const std::string& path, std::string_view key, std::string& out) {
  if (const YamlNode* node = map.find(key)) {
    if (auto text = check.string(*node, join_path(path, key))) out = *text;
  }
}

// "A100-40GB" -> {A100, 40}; "T4" -> {T4, 0}; nullopt when no catalog type.
std::optional<GpuProduct> product_type(const std::string& key, const gpu::Catalog& catalog) {
  if (const auto* type = catalog.find(key)) return GpuProduct{type->name, 0, {}};
  auto dash = key.rfind('-');
  if (dash == std::string::npos) return std::nullopt;
  const auto* type = catalog.find(key.substr(0, dash));
  std::string memory = util::to_upper(key.substr(dash + 1));
  if (type == nullptr || memory.size() < 3 || memory.substr(memory.size() - 2) != "GB") return std::nullopt;
  auto gb = util::parse_uint(memory.substr(0, memory.size() - 2));
  if (!gb || std::find(type->memory_gb.begin(), type->memory_gb.end(), *gb) == type->memory_gb.end()) return std::nullopt;
  return GpuProduct{type->name, static_cast<int>(*gb), {}};
}

void parse_products(Checker& check, const YamlNode& map, const std::string& path, const gpu::Catalog& catalog,
                    KubernetesSettings& out) {
  const YamlNode* products = map.find("gpu_products");
  if (products == nullptr) return;
  const std::string products_path = path + ".gpu_products";
  if (!check.expect_map(*products, products_path)) return;
  for (const auto& [key, value] : products->entries) {
    const std::string entry_path = join_path(products_path, key.value);
    auto product = product_type(key.value, catalog);
    if (!product) {
      check.error(key, entry_path, gpu::unknown_type_message(key.value, catalog));
      continue;
    }
    std::optional<std::vector<std::string>> values;
    if (value.is_scalar()) {
      values = std::vector<std::string>{value.value};
    } else {
      values = check.string_list(value, entry_path);
    }
    if (!values) continue;
    if (values->empty()) check.error(value, entry_path, "list at least one label value");
    for (const auto& v : *values) {
      if (!is_label_value(v) || v.empty()) {
        check.error(value, entry_path,
                    fmt::format("'{}' is not a label value (at most 63 letters, digits, '-', '_' or '.', starting and "
                                "ending with a letter or digit)",
                                v));
      }
    }
    product->values = *values;
    out.gpu_products.push_back(*product);
  }
}

void parse_toleration(Checker& check, const YamlNode& item, const std::string& item_path, KubernetesSettings& out) {
  if (!check.expect_map(item, item_path)) return;
  check.check_keys(item, item_path, {"key", "operator", "value", "effect", "tolerationSeconds"});
  Toleration toleration;
  toleration.op = "Equal";
  text_key(check, item, item_path, "key", toleration.key);
  text_key(check, item, item_path, "operator", toleration.op);
  text_key(check, item, item_path, "value", toleration.value);
  text_key(check, item, item_path, "effect", toleration.effect);
  if (const YamlNode* seconds = item.find("tolerationSeconds")) {
    toleration.toleration_seconds = check.integer(*seconds, item_path + ".tolerationSeconds");
  }
  if (const YamlNode* op = item.find("operator"); op != nullptr && toleration.op != "Exists" && toleration.op != "Equal") {
    check.error(*op, item_path + ".operator", fmt::format("unknown operator '{}'; use Exists or Equal", toleration.op));
  }
  static const std::vector<std::string> effects = {"NoSchedule", "PreferNoSchedule", "NoExecute"};
  if (const YamlNode* effect = item.find("effect");
      effect != nullptr && std::find(effects.begin(), effects.end(), toleration.effect) == effects.end()) {
    check.error(*effect, item_path + ".effect",
                fmt::format("unknown effect '{}'; use NoSchedule, PreferNoSchedule or NoExecute", toleration.effect));
  }
  if (toleration.op == "Exists" && !toleration.value.empty()) {
    check.error(item, item_path, "operator Exists takes no value; drop value: or use operator: Equal");
  }
  out.tolerations.push_back(toleration);
}

void parse_tolerations(Checker& check, const YamlNode& map, const std::string& path, KubernetesSettings& out) {
  const YamlNode* tolerations = map.find("tolerations");
  if (tolerations == nullptr) return;
  out.tolerations.clear();
  if (!check.expect_sequence(*tolerations, path + ".tolerations")) return;
  for (std::size_t i = 0; i < tolerations->items.size(); ++i) {
    parse_toleration(check, tolerations->items[i], fmt::format("{}.tolerations[{}]", path, i), out);
  }
}

void check_names(Checker& check, const YamlNode& map, const std::string& path, const KubernetesSettings& out) {
  for (const char* key : {"namespace", "image_pull_secret", "storage_class"}) {
    const YamlNode* node = map.find(key);
    if (node == nullptr || !node->is_scalar()) continue;
    if (!is_dns_label(node->value) && !(std::string_view(key) == "storage_class" && node->value.size() <= 253)) {
      check.error(*node, join_path(path, key),
                  fmt::format("'{}' is not a Kubernetes name (lower-case letters, digits and '-', at most 63)", node->value));
    }
  }
  if (const YamlNode* label = map.find("gpu_label"); label != nullptr && label->is_scalar() && !is_label_key(out.gpu_label)) {
    check.error(*label, path + ".gpu_label",
                fmt::format("'{}' is not a node label key (e.g. nvidia.com/gpu.product)", out.gpu_label));
  }
  static const std::regex quantity(R"(^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$)");
  if (const YamlNode* size = map.find("volume_size"); size != nullptr && size->is_scalar() &&
                                                      !std::regex_match(out.volume_size, quantity)) {
    check.error(*size, path + ".volume_size",
                fmt::format("'{}' is not a storage quantity; write e.g. 10Gi or 500Mi", out.volume_size));
  }
  static const std::vector<std::string> modes = {"ReadWriteMany", "ReadWriteOnce", "ReadOnlyMany"};
  if (const YamlNode* mode = map.find("volume_access_mode");
      mode != nullptr && mode->is_scalar() && std::find(modes.begin(), modes.end(), out.volume_access_mode) == modes.end()) {
    check.error(*mode, path + ".volume_access_mode",
                fmt::format("unknown access mode '{}'; use ReadWriteMany, ReadWriteOnce or ReadOnlyMany", out.volume_access_mode));
  }
}

}  // namespace

bool is_dns_label(std::string_view text) {
  if (text.empty() || text.size() > 63) return false;
  auto lower_alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_alnum(text.front()) || !lower_alnum(text.back())) return false;
  return std::all_of(text.begin(), text.end(), [&](char c) { return lower_alnum(c) || c == '-'; });
}

const std::vector<std::string>& kubernetes_setting_keys() {
  static const std::vector<std::string> keys = {
      "kubeconfig",   "context",     "namespace",     "image_pull_secret", "default_image",     "gpu_label",
      "gpu_products", "tolerations", "storage_class", "volume_size",       "volume_access_mode"};
  return keys;
}

void parse_kubernetes_settings(Checker& check, const YamlNode& map, const std::string& path, const gpu::Catalog& catalog,
                               KubernetesSettings& out) {
  const std::pair<std::string_view, std::string*> texts[] = {
      {"kubeconfig", &out.kubeconfig},       {"context", &out.context},
      {"namespace", &out.namespace_name},    {"image_pull_secret", &out.image_pull_secret},
      {"default_image", &out.default_image}, {"gpu_label", &out.gpu_label},
      {"storage_class", &out.storage_class}, {"volume_size", &out.volume_size},
      {"volume_access_mode", &out.volume_access_mode},
  };
  for (const auto& [key, target] : texts) text_key(check, map, path, key, *target);
  check_names(check, map, path, out);
  parse_products(check, map, path, catalog, out);
  parse_tolerations(check, map, path, out);
}

BackendKeyParser kubernetes_config_keys() {
  BackendKeyParser parser;
  parser.keys = kubernetes_setting_keys();
  parser.parse = [](manifest::Checker& check, const manifest::YamlNode& value, const std::string& path,
                    const gpu::Catalog& catalog, CloudConfig& cloud) {
    auto settings = std::make_shared<KubernetesSettings>();
    if (value.is_map()) parse_kubernetes_settings(check, value, path, catalog, *settings);
    cloud.settings = settings;
    cloud.discover_gpus = !cloud.gpus_declared;  // offers from the nodes (discover_offers)
  };
  return parser;
}

}  // namespace gpurun::cloud
