#include "tests/app/foreign_fixture.h"

#include <fstream>

#include "core/io/checkpoint.h"
#include "core/io/foreign.h"
#include "core/model/model.h"

namespace mechscope::test {

void export_mamba_ssm_folder(const std::string& native_checkpoint, const std::string& folder) {
  Checkpoint ck = load_checkpoint(native_checkpoint);
  nlohmann::json cfg = ck.config.to_json();
  for (const char* ours : {"pos_emb", "parallel_layer_idx", "norm_epsilon", "max_seq_len"}) cfg.erase(ours);
  std::ofstream(folder + "/config.json") << cfg.dump(2);
  write_safetensors(folder + "/model.safetensors", ck.model->state_dict(), {{"format", "pt"}});
}

}  // namespace mechscope::test
