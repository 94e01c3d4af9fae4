#include <doctest/doctest.h>

#include "cloud/backend/kubernetes/kubernetes_logs.hpp"

using namespace gpurun::cloud;

TEST_CASE("pod log lines with the API's times become records") {
  std::string out;
  const std::string text = "1970-01-01T00:00:01.250000000Z hello world\n1970-01-01T00:00:02Z \nno time here\n"
                           "1970-01-01T00:00:03Z partial";
  const auto used = append_pod_log_records(text, 2, 99, false, out);
  CHECK(out == "1250 2 o hello world\n2000 2 o \n99 2 o no time here\n");
  CHECK(used == text.size() - std::string("1970-01-01T00:00:03Z partial").size());
  out.clear();
  CHECK(append_pod_log_records(text.substr(used), 2, 99, true, out) == text.size() - used);
  CHECK(out == "3000 2 O partial\n");
}

TEST_CASE("marker records keep to one line") {
  CHECK(marker_record(5, 1, "attempt 2\nstarted") == "5 1 m attempt 2 started\n");
}

TEST_CASE("secret values are masked in each line, a multi-line value line by line") {
  std::string out;
  append_pod_log_records("1970-01-01T00:00:01Z token=abcd1234 and abcd1234\n1970-01-01T00:00:01Z -----BEGIN K-----\n"
                         "1970-01-01T00:00:01Z MIIBOg\n1970-01-01T00:00:01Z -----END K-----\n",
                         1, 0, false, out, {"abcd1234", "-----BEGIN K-----\nMIIBOg\n-----END K-----"});
  CHECK(out == "1000 1 o token=*** and ***\n1000 1 o ***\n1000 1 o ***\n1000 1 o ***\n");
}
