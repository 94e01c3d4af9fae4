/* A program that cannot start: it needs libgpurun_test_absent.so, which is nowhere on the
   loader's path (built without an RPATH). ensure_remote_gpurun's "does not run" case uploads it. */
int gpurun_test_absent_function(void);
int main(void) { return gpurun_test_absent_function(); }
