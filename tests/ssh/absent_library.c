/* A shared library that tests/ssh/needs_absent_library links to but that is never installed
   where it runs: starting that program fails in the dynamic loader, as a gpurun does on a host
   that lacks one of its runtime libraries. */
int gpurun_test_absent_function(void) { return 0; }
