// A plugin whose register function adds a task and then throws: nothing it added may stay registered.
#include <stdexcept>

#include "core/plugin/plugin.h"

MECHSCOPE_PLUGIN {
  host.add_task({"half-registered", "must not survive", [](const nlohmann::json& c) -> std::unique_ptr<mechscope::Task> {
                   return mechscope::make_task({{"task", "ar"}});
                 }});
  throw std::runtime_error("cannot find my data files");
}
