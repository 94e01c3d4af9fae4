#include <unistd.h>

#include <string>
#include <vector>

#include "cli/app.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  gpurun::commands::Context ctx;
  ctx.out_is_tty = isatty(STDOUT_FILENO) != 0;
  ctx.in_is_tty = isatty(STDIN_FILENO) != 0;
  ctx.err_is_tty = isatty(STDERR_FILENO) != 0;
  return gpurun::cli::run_cli(args, ctx);
}
