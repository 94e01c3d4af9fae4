#include "manifest/image_reference.hpp"

#include <optional>
#include <regex>

#include "util/strings.hpp"

namespace gpurun::manifest {

namespace {

util::Error reference_error(std::string_view text, const std::string& why) {
  return util::Error{util::ExitCode::usage, "image base: '" + std::string(text) + "' is not a valid image reference: " +
                                                why + "; use [registry/]repository[:tag][@sha256:digest], e.g. ubuntu:22.04"};
}

bool looks_like_registry(std::string_view component) {
  return component.find('.') != std::string_view::npos || component.find(':') != std::string_view::npos ||
         component == "localhost";
}

}  // namespace

std::string Reference::to_string() const {
  std::string text = registry + "/" + repository;
  if (!tag.empty()) text += ":" + tag;
  if (!digest.empty()) text += "@" + digest;
  return text;
}

namespace {

// parse_reference's grammar; errors carry only why the text is not a reference.
util::Result<Reference> parse_reference_parts(std::string_view text, std::string_view registry) {
  auto reference_error = [](std::string_view, const std::string& why) { return util::Error{util::ExitCode::usage, why}; };
  static const std::regex component("[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*");
  static const std::regex tag_pattern("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
  static const std::regex digest_pattern("sha256:[a-f0-9]{64}");
  static const std::regex host_pattern("[A-Za-z0-9.-]+(?::[0-9]+)?|\\[[0-9a-fA-F:]+\\](?::[0-9]+)?");
  if (text.empty()) return reference_error(text, "it is empty");
  Reference reference;
  std::string rest(text);
  if (auto at = rest.find('@'); at != std::string::npos) {
    reference.digest = rest.substr(at + 1);
    rest.erase(at);
    if (!std::regex_match(reference.digest, digest_pattern)) {
      return reference_error(text, "the digest must be sha256: followed by 64 lowercase hex digits");
    }
  }
  auto slash = rest.find('/');
  if (slash != std::string::npos && looks_like_registry(std::string_view(rest).substr(0, slash))) {
    reference.registry = rest.substr(0, slash);
    rest.erase(0, slash + 1);
    if (!std::regex_match(reference.registry, host_pattern)) return reference_error(text, "the registry host is malformed");
  } else {
    reference.registry = std::string(registry);
  }
  if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    reference.tag = rest.substr(colon + 1);
    rest.erase(colon);
    if (!std::regex_match(reference.tag, tag_pattern)) {
      return reference_error(text, "the tag '" + reference.tag + "' may only hold letters, digits, '_', '.' and '-'");
    }
  }
  if (rest.empty()) return reference_error(text, "the repository name is missing");
  for (const auto& part : util::split(rest, '/')) {
    if (!std::regex_match(part, component)) {
      return reference_error(text, "the repository '" + rest + "' must be lowercase letters, digits and separators");
    }
  }
  if ((reference.registry == "docker.io" || reference.registry == "index.docker.io") &&
      rest.find('/') == std::string::npos) {
    rest = "library/" + rest;
  }
  reference.repository = rest;
  if (reference.tag.empty() && reference.digest.empty()) reference.tag = "latest";
  return reference;
}

}  // namespace

util::Result<Reference> parse_reference(std::string_view text, std::string_view registry) {
  auto reference = parse_reference_parts(text, registry);
  if (!reference) return reference_error(text, reference.error().message);
  return reference;
}

std::optional<std::string> reference_problem(std::string_view text) {
  auto reference = parse_reference_parts(text, default_registry);
  if (reference) return std::nullopt;
  return reference.error().message;
}

util::Result<BaseSpec> parse_base(std::string_view text, std::string_view registry) {
  BaseSpec spec;
  if (text == "scratch") return spec;
  if (text.substr(0, 4) == "oci:") {
    spec.kind = BaseSpec::Kind::layout;
    std::string rest(text.substr(4));
    auto colon = rest.rfind(':');
    if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
      spec.layout_tag = rest.substr(colon + 1);
      rest.erase(colon);
    }
    if (rest.empty()) {
      return util::Error{util::ExitCode::usage, "image base: 'oci:' needs a directory; write oci:PATH or oci:PATH:TAG"};
    }
    spec.layout_path = rest;
    return spec;
  }
  auto reference = parse_reference(text, registry);
  if (!reference) return reference.error();
  spec.kind = BaseSpec::Kind::registry;
  spec.reference = *reference;
  return spec;
}

}  // namespace gpurun::manifest
