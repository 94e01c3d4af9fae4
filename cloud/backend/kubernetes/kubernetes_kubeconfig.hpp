#pragma once

// Reading kubeconfig files the way kubectl does, with gpurun's YAML stack: $KUBECONFIG lists
// (a:b) merged, ~/.kube/config, the current context, bearer tokens, client certificates and
// keys kept in memory (handed to libcurl as blobs, never written to disk), CA data or files, and
// `exec` credential plugins (GKE, EKS), whose ExecCredential JSON gives the token.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "util/result.hpp"

namespace gpurun::cloud {

// A user's `exec:` credential plugin: run `command args...` with `env` added; its stdout is an
// ExecCredential whose status gives a token (or a client certificate and key).
struct KubeExecPlugin {
  std::string api_version;
  std::string command;  // a path relative to the kubeconfig's directory when it holds a '/'
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
};

// Everything needed to talk to one cluster as one user (one kubeconfig context resolved).
struct KubeCredentials {
  std::string context;    // the context's name
  std::string server;     // https://host:port
  std::string namespace_name;  // the context's namespace; empty when it sets none
  std::string ca_pem;     // certificate-authority-data (decoded) or the certificate-authority file
  bool insecure_skip_tls_verify = false;
  std::string token;      // token, tokenFile, or an exec plugin's status.token
  std::string client_cert_pem;  // client-certificate(-data), in memory only
  std::string client_key_pem;   // client-key(-data), in memory only
  std::optional<KubeExecPlugin> exec;
  std::string source;     // the file(s) read, for messages
};

// The kubeconfig files to read: `configured` (a cloud's kubeconfig:, "~/" expanded), else the
// entries of `kubeconfig_env` ($KUBECONFIG, ':'-separated, empty ones dropped), else
// `home`/.kube/config.
std::vector<std::string> kubeconfig_paths(const std::string& configured, const std::string& kubeconfig_env,
                                          const std::string& home);

// Reads and merges `paths` (the first file that sets a name or current-context wins; missing files
// of a list of several are skipped) and resolves `context` (empty: current-context). Files are
// read for tokens, certificates and keys; an exec plugin is only recorded (see run_exec_plugin).
// Errors name the file and the fix (exit 2 for a bad or incomplete kubeconfig).
util::Result<KubeCredentials> load_kubeconfig(const std::vector<std::string>& paths, const std::string& context);

// Runs `credentials.exec` (when set) and fills token / client certificate and key from its
// ExecCredential status. A failing or silent plugin is an Error naming the command (exit 125).
util::Result<void> run_exec_plugin(KubeCredentials& credentials);

// Standard base64 (with or without padding) -> bytes; nullopt when it is not base64.
std::optional<std::string> decode_base64(std::string_view text);

}  // namespace gpurun::cloud
