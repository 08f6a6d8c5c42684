// A plugin built against a future plugin API: must be refused with the two version numbers.
#include "core/plugin/plugin.h"
extern "C" __attribute__((visibility("default"))) int mechscope_plugin_api_version() { return MECHSCOPE_PLUGIN_API_VERSION + 1; }
extern "C" __attribute__((visibility("default"))) void mechscope_plugin_register(mechscope::PluginHost&) {}
