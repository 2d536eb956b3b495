// dex-train: DeepEdit training (spec §7-§10) from a JSON config whose every key can be overridden on the command
// line (`--max-epochs 5` or `--max_epochs 5`). One process, or one rank per process under mpirun:
//   dex-train --config configs/train_small.json --dataset-dir DIR --output-dir OUT [--resume]
//   mpirun -np 2 dex-train ...            (OpenMPI as root: --allow-run-as-root; on 2 cores: --oversubscribe)
// Exit status: 0 done, 2 bad input (config, option, dataset, checkpoint), 1 anything else.
#include <cstdio>
#include <exception>
#include <map>
#include <set>
#include <string>

#include "infer/cli_args.h"
#include "kernels/common.h"
#include "train/communicator.h"
#include "train/trainer.h"

namespace {

const char* kUsage =
    "usage: dex-train [--config FILE] [--dataset-dir DIR] [--output-dir DIR] [--resume] [--resume-from STATE]\n"
    "                 [--communicator auto|local|mpi|nccl] [--print-config] [--KEY VALUE ...]\n"
    "  --config FILE    JSON config (default configs/train.json of the source tree); configs/train_small.json is\n"
    "                   the small CPU configuration.\n"
    "  --KEY VALUE      overrides any config key (dashes or underscores): --max-epochs 5, --spatial-size [64,64,64],\n"
    "                   --learning-rate 3e-4, --device cuda, ...\n"
    "  --resume         continue from OUTPUT_DIR/state_latest.safetensors (written after every epoch)\n"
    "  --resume-from F  continue from the training state F\n"
    "  --communicator   data parallel (mpirun -np N dex-train ...): auto = nccl on CUDA, mpi on the CPU, local\n"
    "                   without mpirun. Gradients are all-reduced in buckets of --bucket-mb MiB during the backward.\n"
    "  Outputs in OUTPUT_DIR: model.safetensors (best val_mean_dice), state_latest.safetensors, metrics.jsonl,\n"
    "  curve.png, config.json. Progress goes to stderr.\n";

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<dex::Communicator> comm;
  try {
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      }
    // Config keys are known only after the config is read: first find --config, then parse everything.
    std::string config_path = std::string(DEX_SOURCE_DIR) + "/configs/train.json";
    for (int i = 1; i + 1 < argc; ++i)
      if (dex::normalize_key(argv[i]) == "config") config_path = argv[i + 1];
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a.rfind("--config=", 0) == 0) config_path = a.substr(9);
    }
    nlohmann::json cfg_json = dex::load_config(config_path);
    std::set<std::string> value_keys = {"config", "resume_from", "communicator"};
    for (auto it = cfg_json.begin(); it != cfg_json.end(); ++it) value_keys.insert(it.key());
    // Keys a config may leave out (the trainer's defaults apply) can still be given on the command line.
    const nlohmann::json defaults = dex::train_config_to_json(dex::TrainConfig());
    for (auto it = defaults.begin(); it != defaults.end(); ++it) value_keys.insert(it.key());
    const dex::ParsedArgs args = dex::parse_args(argc, argv, value_keys, {"resume", "print_config"});
    std::map<std::string, std::string> overrides;
    for (const auto& [k, v] : args.values)
      if (k != "config" && k != "resume_from" && k != "communicator") overrides[k] = v.back();
    dex::apply_overrides(cfg_json, overrides, true, config_path);
    const dex::TrainConfig cfg = dex::train_config_from_json(cfg_json, config_path);
    if (args.has("print_config")) {
      std::printf("%s\n", dex::train_config_to_json(cfg).dump(2).c_str());
      return 0;
    }
    comm = dex::make_communicator(args.get("communicator", "auto"), &argc, &argv,
                                 cfg.device == "cuda" ? dex::Device::CUDA : dex::Device::CPU);
    dex::Trainer trainer(cfg, *comm);
    if (comm->is_root()) {
      std::fprintf(stderr, "dex-train: %zu training, %zu validation cases, %lld parameters, %s, %d rank(s) (%s), "
                   "output %s\n", trainer.train_cases(), trainer.val_cases(),
                   static_cast<long long>(trainer.model().num_parameters()), cfg.device.c_str(), comm->size(),
                   comm->name().c_str(), cfg.output_dir.c_str());
      nlohmann::json full = dex::train_config_to_json(cfg);
      const std::string tmp = cfg.output_dir + "/config.json.tmp";
      if (FILE* f = std::fopen(tmp.c_str(), "w")) {
        std::fputs(full.dump(2).c_str(), f);
        std::fputc('\n', f);
        std::fclose(f);
        std::rename(tmp.c_str(), (cfg.output_dir + "/config.json").c_str());
      }
    }
    if (args.has("resume") || args.has("resume_from")) {
      trainer.resume(args.get("resume_from"));
      if (comm->is_root())
        std::fprintf(stderr, "dex-train: resumed at epoch %lld (best val_mean_dice so far %.4f)\n",
                     static_cast<long long>(trainer.next_epoch()), trainer.best_metric());
    }
    trainer.run();
    if (comm->is_root())
      std::fprintf(stderr, "dex-train: done; best val_mean_dice %.4f; model %s\n", trainer.best_metric(),
                   trainer.model_path().c_str());
    return 0;
  } catch (const dex::InputError& e) {
    std::fprintf(stderr, "dex-train: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dex-train: error: %s\n", e.what());
    return 1;
  }
}
