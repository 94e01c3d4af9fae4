#pragma once

// What most commands share, one header per concern: reporting failures, loading the config,
// manifest and state, showing plans and runs, image-push progress.

#include "commands/loading.hpp"
#include "commands/plan_output.hpp"
#include "commands/push_progress.hpp"
#include "commands/report.hpp"
#include "commands/runs.hpp"
