#include <doctest/doctest.h>

#include "cloud/backend/kubernetes/kubernetes_logs.hpp"

using namespace gpurun::cloud;

TEST_CASE("pod log lines with the API's times become records") {
  PodLogRecords log(2, {});
  const std::string text = "1970-01-01T00:00:01.250000000Z hello world\n1970-01-01T00:00:02Z \nno time here\n"
                           "1970-01-01T00:00:03Z partial";
  log.take(text, 99, false);
  CHECK(log.take_records() == "1250 2 o hello world\n2000 2 o \n99 2 o no time here\n");
  CHECK(log.since_ms() == 2000);
  // The rest from second 2 on: its lines taken before are skipped, the unterminated one is final.
  log.take("1970-01-01T00:00:02Z \n1970-01-01T00:00:03Z partial", 99, true);
  CHECK(log.take_records() == "3000 2 O partial\n");
  CHECK(log.ended());
  log.take("1970-01-01T00:00:04Z late\n", 99, true);
  CHECK(log.take_records().empty());
}

TEST_CASE("a resumed pod log skips the lines of the resume second it has, once each") {
  PodLogRecords log(1, {});
  CHECK(!log.since_ms().has_value());
  log.take("1970-01-01T00:00:01.100Z a\n1970-01-01T00:00:02.100Z b\n1970-01-01T00:00:02.100Z b\n"
           "1970-01-01T00:00:02.300Z c\n",
           0, false);
  CHECK(log.take_records() == "1100 1 o a\n2100 1 o b\n2100 1 o b\n2300 1 o c\n");
  CHECK(log.since_ms() == 2000);  // whole seconds: what the API server passes to the kubelet
  // The reply from second 2 on repeats b, b and c; a third b with the same time is new.
  log.take("1970-01-01T00:00:02.100Z b\n1970-01-01T00:00:02.100Z b\n1970-01-01T00:00:02.300Z c\n"
           "1970-01-01T00:00:02.100Z b\n1970-01-01T00:00:03.000Z d\n",
           0, false);
  CHECK(log.take_records() == "2100 1 o b\n3000 1 o d\n");
  CHECK(log.since_ms() == 3000);
  // Nothing new: nothing taken.
  log.take("1970-01-01T00:00:03.000Z d\n", 0, false);
  CHECK(log.take_records().empty());
  // A reply that lost the boundary lines (all new) is taken whole.
  log.take("1970-01-01T00:00:03.500Z e\n1970-01-01T00:00:04.000Z f\n", 0, false);
  CHECK(log.take_records() == "3500 1 o e\n4000 1 o f\n");
  CHECK(log.since_ms() == 4000);
}

TEST_CASE("marker records keep to one line") {
  CHECK(marker_record(5, 1, "attempt 2\nstarted") == "5 1 m attempt 2 started\n");
}

TEST_CASE("secret values are masked across the pod log's lines and fetches, a multi-line value as one ***") {
  PodLogRecords log(1, {"abcd1234", "-----BEGIN K-----\nMIIBOg\n-----END K-----"});
  log.take("1970-01-01T00:00:01Z token=abcd1234 and abcd1234\n1970-01-01T00:00:01Z -----BEGIN K-----\n"
           "1970-01-01T00:00:01Z MIIBOg\n",
           0, false);
  // The value's first lines wait: the next fetch may complete it.
  CHECK(log.take_records() == "1000 1 o token=*** and ***\n");
  log.take("1970-01-01T00:00:01Z MIIBOg\n1970-01-01T00:00:02Z -----END K-----!\n1970-01-01T00:00:02Z done\n", 0, false);
  CHECK(log.take_records() == "2000 1 o ***!\n2000 1 o done\n");
  // A line of a multi-line value on its own (8+ characters) is masked too, once the log ends.
  log.take("1970-01-01T00:00:03Z -----BEGIN K-----\n", 0, true);
  CHECK(log.take_records() == "3000 1 o ***\n");
}

TEST_CASE("a multi-line value with a stderr line merged into its middle is masked line by line") {
  PodLogRecords log(1, {"-----BEGIN K-----\nMIIBOgAAAA\n-----END K-----"});
  log.take("1970-01-01T00:00:01Z pem=-----BEGIN K-----\n1970-01-01T00:00:01Z err=boom\n"
           "1970-01-01T00:00:01Z MIIBOgAAAA\n1970-01-01T00:00:01Z -----END K-----!\n",
           0, true);
  CHECK(log.take_records() == "1000 1 o pem=***\n1000 1 o err=boom\n1000 1 o ***\n1000 1 o ***!\n");
}
