// Builds a mamba_ssm-layout folder (config.json + model.safetensors) from a native checkpoint, for the widget
// tests. Plain C++ (no Qt in this header, no torch in the Qt test file).
#pragma once
#include <string>
namespace mechscope::test {
void export_mamba_ssm_folder(const std::string& native_checkpoint, const std::string& folder);
}
