#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "cloud/backend/kubernetes/kubernetes_kubeconfig.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun;
using namespace gpurun::cloud;

namespace {

std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// "hello" and "key!" in base64.
const char* two_clusters =
    "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
    "clusters:\n"
    "- name: lab\n  cluster: {server: 'https://127.0.0.1:6443', certificate-authority-data: aGVsbG8=}\n"
    "- name: prod\n  cluster: {server: 'https://prod:443', certificate-authority: ca.pem}\n"
    "users:\n"
    "- name: admin\n  user: {token: abc123}\n"
    "- name: cert\n  user: {client-certificate-data: aGVsbG8=, client-key-data: a2V5IQ==}\n"
    "contexts:\n"
    "- name: lab\n  context: {cluster: lab, user: admin, namespace: ml}\n"
    "- name: prod\n  context: {cluster: prod, user: cert}\n";

}  // namespace

TEST_CASE("kubeconfig paths: the cloud's key, else $KUBECONFIG entries, else ~/.kube/config") {
  CHECK(kubeconfig_paths("~/k.yaml", "/a:/b", "/home/u") == std::vector<std::string>{"/home/u/k.yaml"});
  CHECK(kubeconfig_paths("", "/a::~/b", "/home/u") == std::vector<std::string>{"/a", "/home/u/b"});
  CHECK(kubeconfig_paths("", "", "/home/u") == std::vector<std::string>{"/home/u/.kube/config"});
}

TEST_CASE("kubeconfig: the current context with a token, CA data and the context's namespace") {
  test::TempDir dir;
  auto creds = load_kubeconfig({write(dir.path(), "config", two_clusters)}, "");
  REQUIRE(creds);
  CHECK(creds->context == "lab");
  CHECK(creds->server == "https://127.0.0.1:6443");
  CHECK(creds->namespace_name == "ml");
  CHECK(creds->ca_pem == "hello");
  CHECK(creds->token == "abc123");
  CHECK(creds->client_cert_pem.empty());
}

TEST_CASE("kubeconfig: a named context with client certificate data and a CA file relative to the file") {
  test::TempDir dir;
  write(dir.path(), "ca.pem", "CA PEM");
  auto creds = load_kubeconfig({write(dir.path(), "config", two_clusters)}, "prod");
  REQUIRE(creds);
  CHECK(creds->ca_pem == "CA PEM");
  CHECK(creds->client_cert_pem == "hello");
  CHECK(creds->client_key_pem == "key!");
  CHECK(creds->namespace_name.empty());
}

TEST_CASE("kubeconfig: $KUBECONFIG files are merged, the first definition wins, missing entries are skipped") {
  test::TempDir dir;
  const auto a = write(dir.path(), "a", "current-context: b-ctx\nusers:\n- name: u\n  user: {token: first}\n");
  const auto b = write(dir.path(), "b",
                       "current-context: ignored\nclusters:\n- name: c\n  cluster: {server: 'https://h:1'}\n"
                       "users:\n- name: u\n  user: {token: second}\ncontexts:\n- name: b-ctx\n  context: {cluster: c, user: u}\n");
  auto creds = load_kubeconfig({a, dir.path() + "/missing", b}, "");
  REQUIRE(creds);
  CHECK(creds->token == "first");
  CHECK(creds->server == "https://h:1");
  CHECK(creds->source == a + ":" + b);
}

TEST_CASE("kubeconfig errors name the file and the fix") {
  test::TempDir dir;
  const auto path = write(dir.path(), "config", two_clusters);
  CHECK(load_kubeconfig({path}, "nope").error().message ==
        "context 'nope' is not in kubeconfig " + path + "; use one of: lab, prod");
  CHECK(load_kubeconfig({path}, "prod").error().message ==
        "cannot read certificate-authority '" + dir.path() + "/ca.pem' of cluster 'prod' (kubeconfig " + path +
            "): No such file or directory; fix the path");
  CHECK(load_kubeconfig({dir.path() + "/none"}, "").error().message ==
        "cannot read kubeconfig " + dir.path() +
            "/none: No such file or directory; set the cloud's kubeconfig: or $KUBECONFIG to a readable file");
  CHECK(load_kubeconfig({dir.path() + "/x", dir.path() + "/y"}, "").error().message ==
        "no kubeconfig found: none of " + dir.path() + "/x, " + dir.path() +
            "/y exists; set the cloud's kubeconfig: or $KUBECONFIG");
  const auto empty = write(dir.path(), "empty", "clusters: []\n");
  CHECK(load_kubeconfig({empty}, "").error().message ==
        "kubeconfig " + empty + " sets no current-context; set the cloud's context: (it defines none)");
  const auto bad = write(dir.path(), "bad", "current-context: x\ncontexts:\n- name: x\n  context: {cluster: gone}\n");
  CHECK(load_kubeconfig({bad}, "").error().message ==
        "context 'x' in kubeconfig " + bad + " names cluster 'gone', which no file defines");
  const auto syntax = write(dir.path(), "syntax", "clusters: [\n");
  auto err = load_kubeconfig({syntax}, "");
  CHECK(err.error().code == util::ExitCode::usage);
  CHECK(err.error().message.rfind("invalid kubeconfig: " + syntax + ":2:1: error: ", 0) == 0);
  const auto half = write(dir.path(), "half",
                          "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://h'}\n"
                          "users:\n- name: u\n  user: {client-certificate-data: aGVsbG8=}\n"
                          "contexts:\n- name: x\n  context: {cluster: c, user: u}\n");
  CHECK(load_kubeconfig({half}, "").error().message ==
        "user 'u' in kubeconfig " + half + " has a client certificate without its key; give both");
}

TEST_CASE("kubeconfig exec plugins: the ExecCredential's token is used; failures name the command") {
  test::TempDir dir;
  write(dir.path(), "plugin.sh",
        "#!/bin/sh\n[ \"$1\" = fail ] && { echo 'token expired' >&2; exit 3; }\n"
        "echo \"{\\\"kind\\\":\\\"ExecCredential\\\",\\\"status\\\":{\\\"token\\\":\\\"from-$MY_VAR\\\"}}\"\n");
  std::filesystem::permissions(dir.path() + "/plugin.sh", std::filesystem::perms::owner_all);
  const auto config = write(dir.path(), "config",
                            "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://h'}\n"
                            "users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
                            "      command: ./plugin.sh\n      env: [{name: MY_VAR, value: plugin}]\n"
                            "- name: f\n  user:\n    exec: {command: ./plugin.sh, args: [fail]}\n"
                            "contexts:\n- name: x\n  context: {cluster: c, user: u}\n- name: f\n  context: {cluster: c, user: f}\n");
  auto creds = load_kubeconfig({config}, "");
  REQUIRE(creds);
  REQUIRE(creds->exec.has_value());
  CHECK(creds->exec->command == dir.path() + "/./plugin.sh");
  REQUIRE(run_exec_plugin(*creds));
  CHECK(creds->token == "from-plugin");
  auto failing = load_kubeconfig({config}, "f");
  REQUIRE(failing);
  auto result = run_exec_plugin(*failing);
  REQUIRE(!result);
  CHECK(result.error().message == "credential plugin '" + dir.path() + "/./plugin.sh' (context 'f', kubeconfig " + config +
                                      ") exited with 3: token expired; run it by hand to see why");
}

TEST_CASE("base64 decoding with and without padding") {
  CHECK(decode_base64("aGVsbG8=") == "hello");
  CHECK(decode_base64("aGVsbG8") == "hello");
  CHECK(decode_base64("a2V5IQ==") == "key!");
  CHECK(!decode_base64("***").has_value());
}
