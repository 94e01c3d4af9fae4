#pragma once

// Image-push progress drawn on the terminal.

#include "cloud/images/push.hpp"
#include "commands/context.hpp"

namespace gpurun::commands {

// Progress of image pushes drawn on ctx.err: a line per blob, a live byte count on a terminal.
cloud::PushProgress push_progress(Context& ctx);


}  // namespace gpurun::commands
