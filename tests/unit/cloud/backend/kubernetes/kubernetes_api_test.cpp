#include <doctest/doctest.h>

#include "cloud/backend/kubernetes/kubernetes_api.hpp"

using namespace gpurun;
using namespace gpurun::cloud;

TEST_CASE("API errors say what was refused and the fix") {
  ApiReply forbidden{403,
                     nlohmann::json{{"kind", "Status"},
                                    {"message", "jobs.batch is forbidden: User \"dev\" cannot create resource \"jobs\""}}};
  CHECK(api_error("k8s", "POST", "/apis/batch/v1/namespaces/ml/jobs", forbidden).message ==
        "kubernetes cloud 'k8s': POST /apis/batch/v1/namespaces/ml/jobs: jobs.batch is forbidden: User \"dev\" cannot "
        "create resource \"jobs\" (403); grant the kubeconfig's user RBAC to create jobs in the namespace");
  ApiReply logs_forbidden{403, nlohmann::json{{"message", "no"}}};
  CHECK(api_error("k8s", "GET", "/api/v1/namespaces/ml/pods/p1/log?timestamps=true", logs_forbidden).message ==
        "kubernetes cloud 'k8s': GET /api/v1/namespaces/ml/pods/p1/log: no (403); grant the kubeconfig's user RBAC to "
        "get pods/log in the namespace");
  CHECK(api_error("k8s", "GET", "/api/v1/namespaces/ml/pods?labelSelector=x", logs_forbidden).message ==
        "kubernetes cloud 'k8s': GET /api/v1/namespaces/ml/pods: no (403); grant the kubeconfig's user RBAC to list "
        "pods in the namespace");
  ApiReply unauthorized{401, nullptr, "Unauthorized"};
  const auto error = api_error("k8s", "GET", "/api/v1/namespaces/ml/pods", unauthorized);
  CHECK(error.code == util::ExitCode::backend);
  CHECK(error.message ==
        "kubernetes cloud 'k8s': GET /api/v1/namespaces/ml/pods: Unauthorized (401); the API server refused the "
        "credentials; check the kubeconfig's user (token, certificate or exec plugin)");
}
