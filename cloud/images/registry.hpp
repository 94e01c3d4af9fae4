#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/net/http.hpp"
#include "cloud/images/oci.hpp"
#include "util/result.hpp"

namespace gpurun::cloud::registry {

struct Credentials {
  std::string username;
  std::string password;
};

struct Options {
  bool insecure = false;  // allow plain http:// for a host that is not loopback
  std::string ca_file;    // extra CA bundle for https
  std::optional<Credentials> credentials;  // basic auth, also sent to a bearer token realm
  int max_attempts = 4;   // per request, on 5xx and connection errors
  std::chrono::milliseconds initial_backoff{200};
  // A request that moves no byte for this long is abandoned (a stalled registry); 0 = never.
  std::chrono::seconds idle_timeout{60};
  // Fault injection for tests: asked before each buffer of a streamed upload with the blob
  // offset; returning true breaks the connection there (the push must then resume).
  std::function<bool(std::uint64_t offset)> interrupt_upload;
  // Upload progress of one blob: bytes of it sent so far (called often; keep it cheap).
  std::function<void(const std::string& digest, std::uint64_t sent, std::uint64_t total)> on_progress;
};

// A blob to push: a file (`path`) or bytes in memory (`data`, used when path is empty).
struct Blob {
  oci::Descriptor descriptor;
  std::string path;
  std::string data;
};

struct BlobOutcome {
  enum class How { skipped, mounted, uploaded };
  How how = How::skipped;
  std::uint64_t bytes_uploaded = 0;
};

struct PushResult {
  std::string digest;  // the manifest's
  std::uint64_t bytes_uploaded = 0;
  int blobs_uploaded = 0;
  int blobs_skipped = 0;
  int blobs_mounted = 0;
};

// A manifest as a registry serves it.
struct FetchedManifest {
  std::string bytes;
  std::string media_type;
  std::string digest;  // of `bytes`
};

// Requests sent so far, by method (for progress output and tests).
using RequestCounts = std::map<std::string, int>;

// The wait before retry number `attempt` (1 = the first retry): `initial` doubled each time,
// at most `cap`.
std::chrono::milliseconds backoff_delay(int attempt, std::chrono::milliseconds initial,
                                        std::chrono::milliseconds cap = std::chrono::seconds(10));

// How many bytes an upload session holds according to its `Range: 0-N` header (N + 1), or
// nullopt when the header is missing or malformed. "0-0" is 0: Distribution says that for an
// empty session.
std::optional<std::uint64_t> parse_upload_range(std::string_view range);

// The idle timeout from GPURUN_REGISTRY_TIMEOUT (a duration: "5s", "2m"), else `fallback`.
// Errors: ExitCode::usage for a value that is not a duration of at least one second.
util::Result<std::chrono::seconds> idle_timeout_from_env(std::chrono::seconds fallback = std::chrono::seconds(60));

// "http(s)://host[:port]" for a registry given as host[:port] or URL: http for loopback hosts
// or `insecure`, https otherwise; docker.io maps to registry-1.docker.io. Errors: ExitCode::usage.
util::Result<std::string> base_url(std::string_view registry, bool insecure);

// The tags gpurun gives a pushed manifest: the first 12 hex digits of its digest, and `version`.
std::vector<std::string> default_tags(const std::string& manifest_digest, const std::string& version);

// Login for `registry` (host[:port]): GPURUN_REGISTRY_USER/GPURUN_REGISTRY_PASSWORD, else the
// `auths` entry of $DOCKER_CONFIG/config.json or ~/.docker/config.json (base64 "user:pass").
std::optional<Credentials> find_credentials(std::string_view registry);

// An OCI distribution client for one registry. Not thread-safe.
class Client {
 public:
  Client(std::string registry, Options options = {});

  // True when `repository` already holds the blob (one HEAD).
  util::Result<bool> blob_exists(const std::string& repository, const std::string& digest);
  // Pushes one blob unless present: mount from one of `mount_from` (same registry) if possible,
  // else a streamed PATCH + PUT (resumed after a broken connection), else POST + monolithic PUT.
  util::Result<BlobOutcome> push_blob(const std::string& repository, const Blob& blob,
                                      const std::vector<std::string>& mount_from = {});
  // PUTs a manifest under `reference` (tag or digest); returns the registry's digest for it.
  util::Result<std::string> put_manifest(const std::string& repository, const std::string& reference,
                                         const std::string& bytes, std::string_view media_type);
  // Pushes every blob, then the manifest by digest, then each tag; a failure before the tags
  // leaves no tag pointing at a partial image.
  util::Result<PushResult> push_image(const std::string& repository, const std::vector<Blob>& blobs,
                                      const std::string& manifest_bytes, const std::vector<std::string>& tags,
                                      const std::vector<std::string>& mount_from = {});

  // Mounts a blob from repository `from` of this registry; false when the registry would not.
  util::Result<bool> mount_blob(const std::string& repository, const std::string& digest, const std::string& from);
  // The digest `repository` serves for manifest `reference` (tag or digest; one HEAD), or
  // nullopt when it has none.
  util::Result<std::optional<std::string>> manifest_digest(const std::string& repository, const std::string& reference);
  // The tags of `repository` (GET /v2/<name>/tags/list); empty when the repository is unknown.
  util::Result<std::vector<std::string>> list_tags(const std::string& repository);
  // DELETEs manifest `digest` of `repository` (Distribution removes every tag on it). `deleted`
  // false when it was already gone; `unsupported` when the registry refuses deletes (HTTP 405).
  struct DeleteOutcome {
    bool deleted = false;
    bool unsupported = false;
  };
  util::Result<DeleteOutcome> delete_manifest(const std::string& repository, const std::string& digest);
  // GETs a manifest by tag or digest; an index is returned as is.
  util::Result<FetchedManifest> get_manifest(const std::string& repository, const std::string& reference);
  // Streams a blob into `path` (written under a temporary name, its digest checked, then renamed).
  util::Result<void> get_blob(const std::string& repository, const oci::Descriptor& blob, const std::string& path);
  // GETs a small blob (an image config) into memory, its digest checked.
  util::Result<std::string> get_small_blob(const std::string& repository, const std::string& digest);
  // Copies a blob from `source_repository` of `source`'s registry into `repository` of this one
  // unless it is there: a GET streamed through a bounded buffer into the upload's PATCH body,
  // nothing held in memory or written to disk. The digest is checked on the fly; a mismatch
  // (or a failed GET) aborts the upload before it is committed.
  util::Result<BlobOutcome> copy_blob(Client& source, const std::string& source_repository, const std::string& repository,
                                      const oci::Descriptor& blob);

  const RequestCounts& request_counts() const { return counts_; }
  const std::string& url() const { return base_; }

 private:
  util::Result<http::Response> send(http::Request request, const std::string& scope, bool replayable = true);
  util::Result<void> authenticate(const http::Response& challenge, const std::string& scope);
  enum class StreamFailure { none, unsupported };
  util::Result<std::uint64_t> upload_streamed(const std::string& repository, const Blob& blob, std::string& location,
                                              StreamFailure& failure_kind);
  util::Result<std::string> start_upload(const std::string& repository);
  util::Result<std::uint64_t> upload_monolithic(const std::string& repository, const Blob& blob);
  util::Result<void> finish_upload(const std::string& repository, const Blob& blob, const std::string& location,
                                   const std::string& scope);
  std::string absolute(const std::string& location) const;
  util::Error failure(const std::string& what, const http::Response& response, const std::string& advice) const;

  std::string registry_;
  std::string base_;
  util::Error base_error_;
  Options options_;
  http::Client http_;
  RequestCounts counts_;
  bool basic_ = false;                          // the registry asked for Basic auth
  std::map<std::string, std::string> tokens_;   // bearer tokens by scope
};

}  // namespace gpurun::cloud::registry
