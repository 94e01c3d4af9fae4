#pragma once

// A plan as commands print it: JSON or tables.

#include <nlohmann/json.hpp>

#include "cloud/plan/placement.hpp"
#include "commands/context.hpp"

namespace gpurun::commands {

// The plan as `plan --json` prints it.
nlohmann::json plan_json(const cloud::Plan& plan);

// The plan as tables on ctx.out (functions, volumes, images) and its warnings on ctx.err.
void print_plan(Context& ctx, const cloud::Plan& plan);


}  // namespace gpurun::commands
