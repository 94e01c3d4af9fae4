#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "cloud/images/image_layer.hpp"
#include "cloud/images/oci.hpp"
#include "tests/unit/temp_dir.hpp"
#include "util/sha256.hpp"

using namespace gpurun;
using namespace gpurun::cloud;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string reference_string(const std::string& text) {
  auto reference = oci::parse_reference(text);
  REQUIRE_MESSAGE(reference.ok(), reference.error().message);
  return reference->registry + " | " + reference->repository + " | " + reference->tag + " | " + reference->digest;
}

std::string reference_error(const std::string& text) {
  auto reference = oci::parse_reference(text);
  REQUIRE_FALSE(reference.ok());
  CHECK(reference.error().code == util::ExitCode::usage);
  return reference.error().message;
}

// Writes `bytes` as a blob of the layout at `dir` and returns its descriptor.
oci::Descriptor put_blob(const std::string& dir, std::string_view media_type, const std::string& bytes) {
  auto descriptor = oci::describe(media_type, bytes);
  fs::create_directories(dir + "/blobs/sha256");
  std::ofstream(dir + "/blobs/sha256/" + descriptor.digest.substr(7), std::ios::binary) << bytes;
  return descriptor;
}

}  // namespace

TEST_CASE("oci: references") {
  const std::string d = "sha256:" + std::string(64, 'a');
  CHECK(reference_string("ubuntu:22.04") == "docker.io | library/ubuntu | 22.04 | ");
  CHECK(reference_string("ubuntu") == "docker.io | library/ubuntu | latest | ");
  CHECK(reference_string("pytorch/pytorch:2.3.0-cuda12.1") == "docker.io | pytorch/pytorch | 2.3.0-cuda12.1 | ");
  CHECK(reference_string("ghcr.io/acme/trainer:v1") == "ghcr.io | acme/trainer | v1 | ");
  CHECK(reference_string("127.0.0.1:5055/app/img@" + d) == "127.0.0.1:5055 | app/img |  | " + d);
  CHECK(reference_string("localhost/app:dev@" + d) == "localhost | app | dev | " + d);
  CHECK(reference_string("nvcr.io/nvidia/cuda:12.4.1-runtime-ubuntu22.04") ==
        "nvcr.io | nvidia/cuda | 12.4.1-runtime-ubuntu22.04 | ");
  auto custom = oci::parse_reference("ubuntu:22.04", "mirror.local:5000");
  REQUIRE(custom.ok());
  CHECK(custom->to_string() == "mirror.local:5000/ubuntu:22.04");
  CHECK(oci::parse_reference("ubuntu:22.04")->to_string() == "docker.io/library/ubuntu:22.04");

  CHECK(reference_error("Ubuntu:22.04") ==
        "image base: 'Ubuntu:22.04' is not a valid image reference: the repository 'Ubuntu' must be lowercase letters, "
        "digits and separators; use [registry/]repository[:tag][@sha256:digest], e.g. ubuntu:22.04");
  CHECK(reference_error("ubuntu@sha256:abc") ==
        "image base: 'ubuntu@sha256:abc' is not a valid image reference: the digest must be sha256: followed by 64 "
        "lowercase hex digits; use [registry/]repository[:tag][@sha256:digest], e.g. ubuntu:22.04");
  CHECK(reference_error("ubuntu:a+b") ==
        "image base: 'ubuntu:a+b' is not a valid image reference: the tag 'a+b' may only hold letters, digits, '_', "
        "'.' and '-'; use [registry/]repository[:tag][@sha256:digest], e.g. ubuntu:22.04");
  CHECK(reference_error("") ==
        "image base: '' is not a valid image reference: it is empty; use [registry/]repository[:tag][@sha256:digest], "
        "e.g. ubuntu:22.04");
}

TEST_CASE("oci: base forms") {
  auto scratch = oci::parse_base("scratch");
  REQUIRE(scratch.ok());
  CHECK(scratch->kind == oci::BaseSpec::Kind::scratch);
  auto layout = oci::parse_base("oci:images/base:v2");
  REQUIRE(layout.ok());
  CHECK(layout->kind == oci::BaseSpec::Kind::layout);
  CHECK(layout->layout_path == "images/base");
  CHECK(layout->layout_tag == "v2");
  auto untagged = oci::parse_base("oci:./base");
  REQUIRE(untagged.ok());
  CHECK(untagged->layout_path == "./base");
  CHECK(untagged->layout_tag.empty());
  auto remote = oci::parse_base("python:3.11-slim");
  REQUIRE(remote.ok());
  CHECK(remote->kind == oci::BaseSpec::Kind::registry);
  CHECK(remote->reference.repository == "library/python");
  CHECK(oci::parse_base("oci:").error().message == "image base: 'oci:' needs a directory; write oci:PATH or oci:PATH:TAG");
}

TEST_CASE("oci: config and manifest JSON are canonical and carry base diff_ids") {
  oci::BaseImage base;
  base.config = json::parse(R"({"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin","LANG=C"],"Cmd":["sh"]},
                              "rootfs":{"type":"layers","diff_ids":["sha256:b1"]},"history":[{"created_by":"x"}]})");
  base.diff_ids = {"sha256:b1"};
  auto config = oci::image_config(base, {{"LANG", "C.UTF-8"}, {"MODE", "train"}}, "/app", {"sha256:new"});
  CHECK(oci::canonical(config) ==
        R"({"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/usr/bin","LANG=C.UTF-8","MODE=train"],"WorkingDir":"/app"},"os":"linux","rootfs":{"diff_ids":["sha256:b1","sha256:new"],"type":"layers"}})");
  auto scratch_config = oci::image_config(oci::BaseImage{}, {}, "/app", {"sha256:new"});
  CHECK(oci::canonical(scratch_config) ==
        R"({"architecture":"amd64","config":{"WorkingDir":"/app"},"os":"linux","rootfs":{"diff_ids":["sha256:new"],"type":"layers"}})");
  auto config_descriptor = oci::describe(oci::config_media_type, oci::canonical(scratch_config));
  CHECK(config_descriptor.digest == util::sha256_digest(oci::canonical(scratch_config)));
  auto manifest = oci::image_manifest(config_descriptor, {{std::string(oci::layer_media_type), "sha256:l1", 42}});
  CHECK(oci::canonical(manifest) ==
        R"({"config":{"digest":")" + config_descriptor.digest + R"(","mediaType":"application/vnd.oci.image.config.v1+json","size":)" +
            std::to_string(config_descriptor.size) +
            R"(},"layers":[{"digest":"sha256:l1","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":42}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2})");
}

TEST_CASE("oci: reading a base image from an OCI image layout") {
  test::TempDir dir;
  std::string layout = dir.path() + "/layout";
  fs::create_directories(dir.path() + "/src");
  std::ofstream(dir.path() + "/src/hello.txt") << "hello";
  auto layer = build_layer(dir.path() + "/src", {{"hello.txt", "/hello.txt"}}, "/", dir.path() + "/layer.tgz");
  REQUIRE(layer.ok());
  fs::create_directories(layout + "/blobs/sha256");
  fs::copy_file(layer->path, layout + "/blobs/sha256/" + layer->digest.substr(7));
  oci::Descriptor layer_descriptor{std::string(oci::layer_media_type), layer->digest, layer->size};
  auto config = put_blob(layout, oci::config_media_type,
                         oci::canonical(oci::image_config(oci::BaseImage{}, {{"A", "1"}}, "/", {layer->diff_id})));
  auto manifest = put_blob(layout, oci::manifest_media_type, oci::canonical(oci::image_manifest(config, {layer_descriptor})));
  json index = {{"schemaVersion", 2},
                {"manifests", json::array({{{"mediaType", manifest.media_type}, {"digest", manifest.digest}, {"size", manifest.size},
                                            {"annotations", {{"org.opencontainers.image.ref.name", "v1"}}}}})}};
  std::ofstream(layout + "/index.json") << index.dump();

  for (std::string tag : {"v1", ""}) {
    auto base = oci::read_layout(layout, tag);
    REQUIRE_MESSAGE(base.ok(), base.error().message);
    REQUIRE(base->layers.size() == 1);
    CHECK(base->layers[0] == layer_descriptor);
    CHECK(base->diff_ids == std::vector<std::string>{layer->diff_id});
    CHECK(base->config["config"]["Env"] == json::array({"A=1"}));
    CHECK(base->blob_dir == layout + "/blobs/sha256");
  }
  auto missing_tag = oci::read_layout(layout, "v9");
  REQUIRE_FALSE(missing_tag.ok());
  CHECK(missing_tag.error().message == "image base: oci:" + layout +
                                           ": no image is tagged 'v9' (tags: v1); point it at an OCI image layout "
                                           "directory (with index.json)");
  auto no_layout = oci::read_layout(dir.path(), "");
  REQUIRE_FALSE(no_layout.ok());
  CHECK(no_layout.error().message == "image base: oci:" + dir.path() + ": cannot read " + dir.path() +
                                         "/index.json: No such file or directory; point it at an OCI image layout directory (with "
                                         "index.json)");
}
